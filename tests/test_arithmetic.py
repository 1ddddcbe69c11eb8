"""The built-in RL tasks: tiers, a fixed held-out split, exact answers, and `load_problems` names."""
from __future__ import annotations

import pytest

from implicit_prm.core.errors import UserError
from implicit_prm.data.arithmetic import TIERS, split_of, tier_problems
from implicit_prm.data.benchmarks import load_problems
from implicit_prm.data.grading import grade

SIZES = {"add1": 100, "sub1": 55, "mul1": 64, "add3": 1000, "mix1": 729, "add2": 8100}


def test_every_tier_splits_its_whole_question_space_about_80_20():
    for tier, size in SIZES.items():
        train, test = tier_problems(tier, "train"), tier_problems(tier, "test")
        assert len(train) + len(test) == size
        assert not {p["question"] for p in train} & {p["question"] for p in test}
        if size >= 700:
            assert 0.15 < len(test) / size < 0.25
    assert set(SIZES) == set(TIERS)


def test_answers_are_exact_and_the_split_is_fixed():
    by_q = {p["question"]: p["answer"] for t in TIERS for s in ("train", "test") for p in tier_problems(t, s)}
    assert by_q["What is 7 + 8?"] == "15" and by_q["What is 3 - 3?"] == "0" and by_q["What is 9 * 9?"] == "81"
    assert by_q["What is 1 + 2 + 3?"] == "6" and by_q["What is 2 + 3 * 4?"] == "14"  # order of operations
    assert by_q["What is 99 + 10?"] == "109"
    assert split_of("What is 7 + 8?") == split_of("What is 7 + 8?")  # a hash of the text: no seed


def test_load_problems_names_tiers_and_splits():
    train = load_problems("arith:add1+sub1")
    assert len(train) == len(tier_problems("add1", "train")) + len(tier_problems("sub1", "train"))
    assert [p.id for p in train] == [p.id for p in load_problems("arith:add1+sub1:train")]  # fixed order
    assert {p.meta["tier"] for p in train} == {"add1", "sub1"}
    assert [p.id for p in train[:5]] != sorted(p.id for p in train)[:5]  # shuffled
    test = load_problems("arith:add1:test")
    assert all(p.source == "arith:add1" for p in test)
    p = test[0]
    assert grade(f"The sum is \\boxed{{{p.answer}}}.", p.answer).correct
    assert not grade(f"The sum is {int(p.answer) + 1}.", p.answer).correct
    for bad, msg in (("arith:add9", "unknown tier 'add9'"), ("arith:add1:dev", "unknown split 'dev'"),
                     ("arith", "expected arith:TIER")):
        with pytest.raises(UserError, match=msg):
            load_problems(bad)
