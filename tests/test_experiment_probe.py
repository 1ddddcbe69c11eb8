"""experiments/arithmetic_probe.py: its sentence pairs and its preference counts on a worked case."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import arithmetic_probe as probe  # noqa: E402


def test_pairs_hold_one_right_and_one_slipped_result():
    pairs = probe.sentence_pairs(60, seed=3)
    assert {op for op, _, _ in pairs} == {"+", "-", "*"}
    for op, good, bad in pairs:
        a, o, b, c = re.match(r"We start from (\d+)\. We compute \d+ (.) (\d+) = (-?\d+)\.", good).groups()
        assert o == op and int(c) == probe.OPS[op](int(a), int(b))
        c_bad = int(re.search(r"= (-?\d+)\.", bad).group(1))
        assert 1 <= abs(c_bad - int(c)) <= 10 and bad.endswith(f"is {c_bad}.")
    assert probe.sentence_pairs(60, seed=3) == pairs  # seeded


def test_prefers_counts_per_operation():
    good, bad = torch.tensor([1.0, 0.0, 2.0, -1.0]), torch.tensor([0.0, 1.0, 1.0, -1.0])  # wins: 1, 0, 1, tie = 0
    got = probe.prefers(good, bad, ["+", "+", "-", "*"])
    assert got == pytest.approx({"all": 0.5, "+": 0.5, "-": 1.0, "*": 0.0})
