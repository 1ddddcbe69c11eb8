"""The main job (`implicit-prm demo --quick`) end to end on the real embedded model, and its resume."""
from __future__ import annotations

import json

import pytest

from implicit_prm.cli import main
from implicit_prm.demo import DemoConfig, check_same_demo, demo


@pytest.mark.slow
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


def test_a_full_demo_refuses_a_folder_holding_a_quick_one(tmp_path, capsys, monkeypatch):
    """`demo` after `demo --quick` in the same folder must not reuse the quick run's data and model (it failed
    later with N = 16 larger than the 4 samples); by default the two go to different folders."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo_config.json").write_text(json.dumps({"command": "DemoConfig", "output": "elsewhere",
                                                      **{k: v for k, v in vars(DemoConfig(quick=True)).items()
                                                         if k != "output"}}))
    assert main(["demo", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "['quick']" in err
    assert sorted(p.name for p in out.iterdir()) == ["demo_config.json"]  # nothing else written
    check_same_demo(DemoConfig(quick=True, output=str(out)), out)  # the same settings resume (output may move)
    seen = []
    monkeypatch.setattr("implicit_prm.demo.check_same_demo", lambda cfg, where: seen.append(where) or 1 / 0)
    monkeypatch.chdir(tmp_path)
    for quick, where in ((True, "runs/demo-quick"), (False, "runs/demo")):
        with pytest.raises(ZeroDivisionError):
            demo(DemoConfig(quick=quick))
        assert str(seen[-1]) == where
