"""Two CPU processes (torchrun, gloo) train to the same losses as one process with the same global batch."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _train_argv(data, out, model, cache, batch, accum):
    return ["-m", "implicit_prm", "train", "--data", str(data), "--output", str(out), "--model", model,
            "--batch-size", str(batch), "--grad-accum", str(accum), "--lr", "1e-3", "--dtype", "fp32",
            "--ref-cache", str(cache), "--no-progress", "--checkpoint-every", "0", "--max-steps", "4"]


def _losses(out: Path) -> list[float]:
    return [json.loads(l)["loss"] for l in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_match_one_process(tmp_path, builtin_data, tiny_model):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one = tmp_path / "one"
    subprocess.run([sys.executable, *_train_argv(builtin_data, one, tiny_model, tmp_path / "c1.sqlite", 2, 2)],
                   check=True, env=env, capture_output=True, text=True)
    two = tmp_path / "two"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517",
                          *_train_argv(builtin_data, two, tiny_model, tmp_path / "c2.sqlite", 2, 1)],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, abs=1e-4)
    assert a[-1] != pytest.approx(a[0], abs=1e-4)  # the model trained


def _score_argv(data, out, prm, ref):
    return ["-m", "implicit_prm", "score", "--input", str(data), "--output", str(out), "--prm", prm, "--ref", ref,
            "--dtype", "fp32", "--ref-cache", "none", "--no-progress", "--batch-tokens", "300"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_scoring_is_identical_to_one(tmp_path, builtin_data, tiny_model, tiny_model_b):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    subprocess.run([sys.executable, *_score_argv(builtin_data, one, tiny_model, tiny_model_b)],
                   check=True, env=env, capture_output=True, text=True)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29518",
                          *_score_argv(builtin_data, two, tiny_model, tiny_model_b)],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "scored by 2 processes" in res.stdout
    a, b = one.read_text(), two.read_text()
    n = len(a.splitlines())
    assert n >= 8 and len(b.splitlines()) == n
    assert a == b  # same records, same order, same floats
    assert not list(tmp_path.glob("*.partial*"))  # the shards' partial files are merged and removed
    rewards = [json.loads(line)["step_rewards"] for line in a.splitlines()]
    assert any(abs(r) > 1e-6 for rec in rewards for r in rec)  # two different models: non-zero rewards
