"""The main job (`implicit-prm demo --quick`) end to end on the real embedded model, and its resume."""
from __future__ import annotations

import json

import pytest

from implicit_prm.cli import main

pytestmark = pytest.mark.slow


def test_demo_quick_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out), "--dtype", "fp32"]) == 0
    text = capsys.readouterr().out
    assert "held-out results" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_test_responses"] == 16  # 4 problems x 4 responses
    assert set(summary["auroc"]) == {"min", "last", "sum", "mean"}
    assert (out / "prm" / "implicit_prm.json").exists()
    # Re-running finds the finished pieces and does not train again.
    assert main(["demo", "--quick", "--output", str(out), "--dtype", "fp32"]) == 0
    assert "nothing to do" in capsys.readouterr().out
