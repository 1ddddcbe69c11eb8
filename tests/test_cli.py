"""The CLI end to end on tiny models: `data` -> `train` (full and LoRA) -> `score`, and what each leaves on disk."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from implicit_prm.cli import main


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    """Written by the installed console script, so the entry point itself is tested once."""
    exe = shutil.which("implicit-prm") or str(Path(sys.executable).parent / "implicit-prm")
    out = tmp_path_factory.mktemp("data") / "rollouts.jsonl"
    proc = subprocess.run([exe, "data", "--output", str(out), "--n-problems", "5", "--samples-per-problem", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.subprocess  # data_file runs the console script in a child process
def test_data_writes_the_requested_records(data_file):
    recs = [json.loads(line) for line in data_file.read_text().splitlines()]
    assert len(recs) == 5
    for r in recs:
        assert len(r["completions"]) == len(r["correctness"]) == len(r["first_error"]) == 3
        assert True in r["correctness"] and False in r["correctness"]  # balanced by default


def run_cli(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def common(cache: Path) -> list[str]:
    return ["--precision", "fp32", "--no-progress", "--logprob-cache", str(cache)]


def score_records(path: Path) -> list[dict]:
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for r in recs:
        n = len(r["step_spans"])
        assert n >= 1 and len(r["step_rewards"]) == len(r["q_values"]) == n
        assert r["q_values"] == pytest.approx(list(torch.tensor(r["step_rewards"]).cumsum(0).tolist()), abs=1e-6)
        assert set(r["scores"]) == {"min", "last", "sum", "mean"}
        assert r["scores"]["min"] == pytest.approx(min(r["step_rewards"]))
        assert r["scores"]["sum"] == pytest.approx(r["q_values"][-1])
    return recs


@pytest.mark.subprocess  # data_file runs the console script in a child process
def test_train_then_score(tmp_path, capsys, data_file, tiny_model):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    prm = tmp_path / "prm"
    cache = tmp_path / "rc.sqlite"
    run_cli(capsys, "train", "--data", data_file, "--output", prm, "--model", tiny_model, "--objective", "dpo",
            "--beta", "0.1", "--lr", "1e-3", "--batch-size", "2", "--max-steps", "2", *common(cache))
    model = AutoModelForCausalLM.from_pretrained(prm)
    assert model.config.vocab_size == AutoModelForCausalLM.from_pretrained(tiny_model).config.vocab_size
    meta = json.loads((prm / "implicit_prm.json").read_text())
    assert (meta["beta"], meta["objective"], meta["reference_model"], meta["lora"]) == (0.1, "dpo", tiny_model, False)
    before, after = load_file(Path(tiny_model) / "model.safetensors"), load_file(prm / "model.safetensors")
    assert before.keys() == after.keys()
    assert [k for k in before if torch.equal(before[k], after[k])] == []  # every parameter changed
    log = [json.loads(line) for line in (prm / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 for r in log)
    assert not (prm / "checkpoints").exists()

    out = tmp_path / "scored.jsonl"
    stdout = run_cli(capsys, "score", "--input", data_file, "--output", out, "--prm", prm, *common(cache))
    assert "wrote 15 scored responses" in stdout
    recs = score_records(out)
    assert len(recs) == 15
    assert any(abs(x) > 1e-4 for r in recs for x in r["step_rewards"])  # trained != reference
    inputs = [json.loads(line) for line in data_file.read_text().splitlines()]
    assert [(r["prompt"], r["response"]) for r in recs] == [(x["prompt"], c) for x in inputs for c in x["completions"]]


@pytest.mark.subprocess  # data_file runs the console script in a child process
def test_lora_train_then_score_without_ref(tmp_path, capsys, data_file, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prm = tmp_path / "lora"
    cache = tmp_path / "rc.sqlite"
    run_cli(capsys, "train", "--data", data_file, "--output", prm, "--model", tiny_model, "--lora", "--lora-r", "4",
            "--lr", "1e-2", "--batch-size", "4", "--max-steps", "2", *common(cache))
    assert (prm / "adapter_config.json").exists() and not (prm / "model.safetensors").exists()
    meta = json.loads((prm / "implicit_prm.json").read_text())
    assert (meta["lora"], meta["base_model"], meta["reference_model"]) == (True, tiny_model, tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = PeftModel.from_pretrained(base, str(prm))
    assert any("lora_" in n for n, _ in peft_model.named_parameters())

    out = tmp_path / "scored.jsonl"
    run_cli(capsys, "score", "--input", data_file, "--output", out, "--prm", prm, *common(cache))
    recs = score_records(out)
    assert len(recs) == 15 and any(abs(x) > 1e-4 for r in recs for x in r["step_rewards"])

    # The reference was the base with the adapter disabled: scoring the merged weights against the base model
    # loaded from disk gives the same rewards.
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(merged)  # with its chat template
    out2 = tmp_path / "scored_merged.jsonl"
    run_cli(capsys, "score", "--input", data_file, "--output", out2, "--prm", merged, "--ref", tiny_model,
            "--beta", str(meta["beta"]), *common(cache))
    for a, b in zip(recs, score_records(out2)):
        assert a["step_rewards"] == pytest.approx(b["step_rewards"], abs=1e-4)
