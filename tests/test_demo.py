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
    assert "best-of-N accuracy" in text and "step-error F1" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bon"]["n_problems"] == 4 and summary["bon"]["samples_per_problem"] == 4
    assert summary["bon"]["ns"] == [1, 2, 4]
    assert summary["bon"]["methods"]["pass@N"]["acc"][-1] >= summary["bon"]["methods"]["random"]["acc"][-1]
    assert set(summary["steps"]) == {"implicit_prm", "untrained"}
    assert (out / "prm" / "implicit_prm.json").exists() and (out / "report.html").stat().st_size > 1000
    # Re-running finds the finished pieces and does not train again.
    assert main(["demo", "--quick", "--output", str(out), "--dtype", "fp32"]) == 0
    assert "nothing to do" in capsys.readouterr().out
