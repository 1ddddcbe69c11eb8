"""experiments/scaling.py: its within-problem AUROC on a worked case, its grid, and a --quick run that resumes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import scaling  # noqa: E402
from error_kinds import error_kinds  # noqa: E402


def test_within_problem_auroc_worked_case(tmp_path):
    # problem a: correct response scored 3 above both wrong ones (1, 2) -> AUROC 1; problem b: the correct one
    # scored 1 below the wrong one's 2 -> 0; problem c holds only correct responses -> left out. Mean 0.5.
    rows = [("a", 1, 3.0), ("a", 0, 1.0), ("a", 0, 2.0), ("b", 1, 1.0), ("b", 0, 2.0), ("c", 1, 0.5), ("c", 1, 0.7)]
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps({"problem": p, "response": f"r{i}", "correct": bool(y),
                                        "scores": {"min": s}}) + "\n" for i, (p, y, s) in enumerate(rows)))
    got = scaling.within_problem_auroc(path, "prm.min", n_bootstrap=200)
    assert got["mean"] == pytest.approx(0.5) and got["n_problems"] == 2
    assert got["ci"][0] == pytest.approx(0.0) and got["ci"][1] == pytest.approx(1.0)  # two problems: 0, 1/2 or 1


def test_grid_is_nested_and_ordered():
    pts = scaling.points(scaling.FULL)
    ce1 = [p for p in pts if p[0] == "ce" and p[3] == 1]
    assert len(ce1) == 12 and ce1[0] == ("ce", 100, 1, 1) and ce1[-1] == ("ce", 800, 4, 1)
    sizes = [p * k for _, p, k, _ in ce1]
    assert sizes == sorted(sizes) and max(sizes) == 3200
    assert pts[12:] == [("dpo", 800, 4, 1), ("ce", 400, 4, 2), ("ce", 800, 4, 2)]
    pool = [{"completions": ["x", "y", "z"], "correctness": [True, False, True]}] * 3
    assert scaling.subset(pool, 2, 2) == [{"completions": ["x", "y"], "correctness": [True, False]}] * 2


def test_error_kinds_worked_case(tmp_path):
    # problem p: correct steps [0.1, -0.1] (min -0.1) and [0.0, 0.2] (min 0.0); a "slip" wrong at step 1, steps
    # [0.1, -0.5]; a "drop" wrong at step 0, steps [0.0, 0.3] (min 0.0). Problem q: a lone "slip" wrong at step 0, [-0.3].
    # Correct steps: mean 0.05, sd sqrt(0.05 / 4) = 0.1118.
    # slip: both correct mins beat -0.5 -> 1.0 (q has no correct response); wrong steps -0.5, -0.3 -> shift -0.45.
    # drop: 0.0 vs mins -0.1 (lower) and 0.0 (tie, 1/2) -> 0.25; shift 0.0 - 0.05 = -0.05.
    rows = [("p", True, None, -1, [0.1, -0.1]), ("p", True, None, -1, [0.0, 0.2]), ("p", False, "slip", 1, [0.1, -0.5]),
            ("p", False, "drop", 0, [0.0, 0.3]), ("q", False, "slip", 0, [-0.3])]
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "response": f"r{i}", "correctness": ok, "error_kind": kind,
                                        "first_error": fe, "step_rewards": sr, "scores": {"min": min(sr)}}) + "\n"
                            for i, (p, ok, kind, fe, sr) in enumerate(rows)))
    got = error_kinds(path)
    assert list(got) == ["slip", "drop"]
    sd = (0.05 / 4) ** 0.5
    assert got["slip"] == pytest.approx({"n": 2, "p_correct_above": 1.0, "error_step_shift": -0.45,
                                         "d_prime": -0.45 / sd})
    assert got["drop"] == pytest.approx({"n": 1, "p_correct_above": 0.25, "error_step_shift": -0.05,
                                         "d_prime": -0.05 / sd})


def test_trend_worked_case():
    # AUROC 0.5, 0.6, 0.7 at 100, 200, 400 responses: +0.1 per doubling, 0.8 at 800 and 0.5 + 0.1 log2(32) = 1.0 at
    # 3,200 on the line. top-1 minus majority -0.1 at every size: flat, never reaches 0. The seed-2 and DPO points
    # are left out of the line.
    def point(n, auroc, objective="ce", seed=1):
        diff = {"minus_majority": {"diff": [0.0, -0.1], "ci": None}}
        return {"objective": objective, "pool_seed": seed, "train_responses": n,
                "test": {"auroc_min": {"value": auroc}, "top1_min": diff, "weighted_majority_min": {}}}
    done = {"a": point(100, 0.5), "b": point(200, 0.6), "c": point(400, 0.7), "d": point(400, 0.99, seed=2),
            "e": point(400, 0.0, objective="dpo")}
    tr = scaling.trend(done)
    a = tr["auroc_min"]
    assert a["points"] == 3 and a["slope_per_doubling"] == pytest.approx(0.1)
    assert a["responses_to_target"] == pytest.approx(800) and a["at_3200"] == pytest.approx(1.0)
    assert tr["top1_minus_majority"]["responses_to_target"] is None  # slope 0
    assert tr["weighted_majority_minus_majority"] == {"points": 0, "target": 0.03}  # not measured
    assert "at about 800 training responses (inside the grid)" in scaling.trend_lines(tr)


def test_train_seconds_adds_the_time_before_a_restarted_clock():
    # an old log resumed at step 3: its clock went 10, 20, 30 s, restarted, then 5, 15 s -> 30 + 15 = 45 s in all
    log = [{"elapsed_s": t} for t in (10.0, 20.0, 30.0, 5.0, 15.0)]
    assert scaling.train_seconds(log) == pytest.approx(45.0)
    assert scaling.train_seconds(log[:3]) == pytest.approx(30.0) and scaling.train_seconds([]) == 0.0


@pytest.mark.slow
@pytest.mark.subprocess
def test_scaling_quick_runs_and_resumes(tmp_path, tiny_model):
    cmd = [sys.executable, str(ROOT / "experiments" / "scaling.py"), "--quick", "--model", tiny_model,
           "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    first = subprocess.run([*cmd, "--max-points", "2"], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "scaling_quick.json").read_text())
    assert summary["points_done"] == 2 and summary["points_total"] == len(scaling.points(scaling.QUICK))
    done = sorted(summary["points"])
    assert done == sorted(scaling.point_name(*p) for p in scaling.points(scaling.QUICK)[:2])
    for p in summary["points"].values():
        t = p["test"]
        assert 0.0 <= t["auroc_min"]["value"] <= 1.0 and len(t["majority"]["acc"]) == 3  # N = 1, 2, 4
        assert t["step_error"]["threshold_from_dev"] is not None and p["train_s"] > 0
    again = subprocess.run([*cmd, "--max-points", "1"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("[scaling] ") == 1  # the two finished points were skipped, one new one ran
    assert json.loads((tmp_path / "results" / "scaling_quick.json").read_text())["points_done"] == 3
    assert (tmp_path / "results" / "scaling_quick_problems.png").exists()
