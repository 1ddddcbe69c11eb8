"""experiments/prime_builtin.py end to end in --quick mode on a tiny model: pilot (dev only), main, report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_prime_experiment_quick_runs_every_stage(tmp_path, tiny_model):
    results = tmp_path / "results"
    results.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "prime_builtin.py"), "--quick", "--model",
                           tiny_model, "--out", str(tmp_path / "runs"), "--results", str(results),
                           "--precision", "fp32"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pilot = json.loads((results / "prime_pilot.json").read_text())
    assert {r["arm"] for r in pilot["rows"].values()} == {"rloo", "prime-online"}  # no pilot for the frozen arm
    assert pilot["chosen"]["prime-frozen"]["lr"] == pilot["chosen"]["prime-online"]["lr"]
    assert all(0.0 <= r["dev_pass1"] <= 1.0 for r in pilot["rows"].values())
    report = json.loads((results / "prime_builtin.json").read_text())
    assert set(report["arms"]) == {"rloo", "prime-online", "prime-frozen"}
    for arm, t in report["arms"].items():
        # the initial policy (evaluated by the first arm, rloo, alone: --eval-every = --steps), then the end
        assert [r["step"] for r in t["curve"]] == [0, 2], arm
        assert t["curve"][0]["pass1_mean"] == report["arms"]["rloo"]["curve"][0]["pass1_mean"]
        assert t["s_per_rollout_batch"] > 0
        assert len(t["train_correct"][0]) == 2 and all(0.0 <= v <= 1.0 for _, v in t["train_correct"][0])
    assert not any(report["arms"]["rloo"]["prm_loss"][0]) and not any(report["arms"]["prime-frozen"]["prm_loss"][0])
    evals = {arm: [e["step"] for e in json.loads((tmp_path / "runs" / "main" / f"{arm}_seed0" / "trainer_state.json")
                                                  .read_text())["log_history"] if "eval_rewards/correct/mean" in e]
             for arm in report["arms"]}
    assert evals == {"rloo": [0, 2], "prime-online": [2], "prime-frozen": [2]}  # no repeated initial evaluation
    assert all(len(c) == 2 for c in report["arms"]["prime-online"]["pairwise_acc"])
    assert not any(report["arms"]["rloo"]["pairwise_acc"][0])
