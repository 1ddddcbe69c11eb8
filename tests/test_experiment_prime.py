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
        assert [r["step"] for r in t["curve"]] == [0, 1, 2], arm  # the initial policy, then every rollout batch
        assert t["s_per_rollout_batch"] > 0
    assert all(len(c) == 2 for c in report["arms"]["prime-online"]["pairwise_acc"])
    assert not any(report["arms"]["rloo"]["pairwise_acc"][0])
