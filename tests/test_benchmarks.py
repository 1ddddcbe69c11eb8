"""The benchmark and experiment scripts run end to end on tiny inputs and write sane results (smoke tests: the
figures themselves come from the full runs, committed under benchmarks/results and experiments/results)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROCESSBENCH = ROOT.parent / "shared" / "data" / "processbench" / "gsm8k.json"


def run(args, tmp_path, timeout=600):
    env = {**os.environ, "IMPLICIT_PRM_BENCH_RESULTS": str(tmp_path), "OUT": str(tmp_path),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT / "benchmarks", env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.subprocess
@pytest.mark.skipif(not PROCESSBENCH.exists(), reason="needs ../shared/data")
def test_score_throughput(tmp_path, tiny_model):
    run(["score_throughput.py", "--model", tiny_model, "--pb-per-split", "2", "--builtin-problems", "2",
         "--builtin-n", "3"], tmp_path)
    r = json.loads((tmp_path / "score_throughput.json").read_text())
    for name, row in r["results"].items():
        assert row["responses"] == (4 if name == "processbench" else 6)
        assert row["naive_s"] > 0 and row["ours_cold_s"] > 0 and row["bound_s"] > 0
        # the naive re-implementation and ours compute the same total reward (step boundaries may differ)
        assert row["total_reward_max_abs_diff_vs_naive"] < 1e-4


@pytest.mark.subprocess
def test_memory(tmp_path, tiny_model):
    out = run(["memory.py", "--model", tiny_model, "--lengths", "256", "1024"], tmp_path)
    r = json.loads((tmp_path / "memory.json").read_text())
    rows = {(x["method"], x["length"]): x for x in r["rows"]}
    assert set(rows) == {("chunked", 256), ("naive", 256), ("chunked", 1024), ("naive", 1024)}
    # the naive (T, V) logits at 1024 tokens x 49152 vocab are 192 MiB: chunked must be well below
    assert rows[("chunked", 1024)]["extraction_peak_mib"] < rows[("naive", 1024)]["extraction_peak_mib"] - 100
    assert "chunked peak" in out


@pytest.mark.subprocess
def test_cost_growth(tmp_path, tiny_model):
    run(["cost_growth.py", "--model", tiny_model, "--lengths", "64", "256", "--tokens", "512", "--ns", "1", "4"],
        tmp_path)
    r = json.loads((tmp_path / "cost_growth.json").read_text())
    assert [x["length"] for x in r["by_length"]] == [64, 256]
    assert [x["n"] for x in r["by_n"]] == [1, 4]
    assert all(x["ms_per_token"] > 0 for x in r["by_length"] + r["by_n"])


@pytest.mark.subprocess
def test_train_throughput(tmp_path, tiny_model):
    run(["train_throughput.py", "--model", tiny_model, "--steps", "1", "--batch-size", "4"], tmp_path)
    r = json.loads((tmp_path / "train_throughput.json").read_text())
    assert set(r["rows"]) == {f"{o}/{k}" for o in ("ce", "dpo") for k in ("naive", "full", "lora")}
    for row in r["rows"].values():
        assert row["tokens_per_s"] > 0 and row["peak_rss_mib"] > 0


@pytest.mark.subprocess
def test_train_vs_trl(tmp_path):
    """TRL's DPOTrainer and ours, LoRA (the full fine-tune differs only in what trains), one pair of a tiny random
    model: the same ids, tokens and loss at init."""
    out = run(["train_vs_trl.py", "--tiny", "--configs", "lora"], tmp_path)
    r = json.loads((tmp_path / "train_vs_trl.json").read_text())
    assert set(r["rows"]) == {"trl/lora", "ours/lora"}
    for row in r["rows"].values():
        assert row["tokens_per_s"] > 0 and row["peak_rss_mib"] > 0
        assert abs(row["first_loss"] - math.log(2)) < 1e-4  # policy == reference at the first step
    trl, ours = r["rows"]["trl/lora"], r["rows"]["ours/lora"]
    assert trl["pairs_with_same_ids"] == trl["pairs"] == r["pairs"]  # both sides tokenize every pair alike
    assert trl["tokens_per_step"] == ours["tokens_per_step"]  # the same pairs in the same steps
    assert abs(trl["final_loss"] - ours["final_loss"]) < 1e-3
    assert r["flop_ratio"]["lora"] > 1 and "vs TRL" in out


@pytest.mark.subprocess
def test_gpu_script_on_cpu_with_tiny_configs(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny"], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_tiny.json").read_text())
    assert r["scoring"]["tiny"]["tokens"] > 0
    assert set(r["training"]) == {"tiny/full", "tiny/lora", "tiny/naive_full"}
    # every command through the CLI, its modules' devices recorded, and each compared with a CPU run
    c = json.loads((tmp_path / "gpu_commands_tiny.json").read_text())
    assert c["failed_checks"] == []
    for kind in ("full", "lora"):
        t = c["train"][kind]
        assert t["one_step_is_first_step"] and t["losses_vs_cpu"]["n"] == 2 and t["losses_vs_cpu"]["ok"]
        assert all(t[f"train_{kind}_{run}"]["on_device"] for run in ("acc_1", "acc_2", "cpu_2"))
    inf = c["inference"]
    assert all(inf[name]["on_device"] for name in ("score_acc", "rollout_acc", "search_acc"))
    assert inf["score_step_rewards_vs_cpu"]["n"] > 0 and inf["search_step_rewards_vs_cpu_score"]["n"] > 0
    assert c["serve"]["on_device"] and c["serve"]["step_rewards_vs_cpu_score"]["n"] > 0
    # the fused head's log-probs and gradients against the naive log-softmax, and auto attention's kernel
    k = json.loads((tmp_path / "gpu_kernels_tiny.json").read_text())
    assert k["ok"] and len(k["head_logprobs"]) == 4
    assert all(r["max_abs_logprob"] <= 1e-4 for r in k["head_logprobs"] if r["precision"] == "fp32")
    assert k["attention"]["loaded"] == {"inference": "eager", "train_512": "eager"}
    assert [r["attention"] for r in k["packed_prompts"]] == ["eager", "sdpa"]
    assert all(r["ok"] and r["max_abs_grad"] <= 1e-4 for r in k["packed_prompts"])


@pytest.mark.slow
@pytest.mark.subprocess
def test_laptop_scale_quick(tmp_path):
    """The paper-experiments script, --quick, on the embedded model."""
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "laptop_scale.py"), "--quick", "--out",
                           str(tmp_path / "run"), "--results", str(tmp_path / "res")], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "res" / "laptop_scale.json").read_text())
    assert set(r["runs"]) == {"ce_p8_k2", "dpo_p8_k2", "ce_p8_k1"}
    for run_ in r["runs"].values():
        assert 0 <= run_["with_reference"]["auroc_min"] <= 1
        assert len(run_["with_reference"]["top1_min"]) == len(r["ns"])
    assert (tmp_path / "res" / "laptop_scale_objectives.png").stat().st_size > 1000


@pytest.mark.subprocess
def test_search_incremental(tmp_path, tiny_model):
    """Incremental against whole-text re-scoring: both give the same rewards, and fewer tokens run incrementally."""
    run(["search_incremental.py", "--model", tiny_model, "--steps", "4", "--beams", "2", "--problems", "1",
         "--repeats", "1", "--precision", "fp32"], tmp_path)
    r = json.loads((tmp_path / "search_incremental.json").read_text())
    assert r["max_abs_reward_diff"] < 1e-4
    assert r["model_tokens"]["incremental"] < r["model_tokens"]["rescore"] and r["speedup"] > 0
    assert r["ids_vs_retokenized_text"]["max_abs_step_reward_diff"] > 0  # SmolLM2 re-tokenizes every join


@pytest.mark.subprocess
def test_serve_load(tmp_path, tiny_model):
    run(["serve_load.py", "--prm", tiny_model, "--clients", "4", "--requests", "8"], tmp_path)
    r = json.loads((tmp_path / "serve_load.json").read_text())
    for mode in ("one_at_a_time", "batched"):
        assert r[mode]["requests_per_s"] > 0 and r[mode]["p50_s"] <= r[mode]["p99_s"]
    assert r["batched"]["batches"] <= 9 and r["forward_bound"]["ratio"] > 0


@pytest.mark.subprocess
def test_search_builtin_experiment(tmp_path, tiny_model, tiny_model_b):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "search_builtin.py"), "--prm", tiny_model_b,
                           "--ref", tiny_model, "--seeds", "4", "5", "--n-problems", "2", "--ns", "4", "--out", str(tmp_path / "run"),
                           "--results", str(tmp_path / "res")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "res" / "search_builtin.json").read_text())
    assert set(r["rows"]) == {"single sample", "best-of-n N=4", "beam N=4", "dvts N=4"}
    for row in r["rows"].values():
        assert 0 <= row["accuracy"] <= 1 and row["n_problems"] == 4 and row["generated_tokens"] > 0  # 2 sets of 2
        assert row["accuracy"] <= row["any_candidate_correct"] and 0 <= row["majority_vote"] <= 1
    assert r["rows"]["beam N=4"]["generated_tokens"] > r["rows"]["single sample"]["generated_tokens"]


@pytest.mark.subprocess
def test_cpu_limit(tmp_path, tiny_model):
    """The CPU-limit benchmark on a tiny model, its baseline a fresh clone of HEAD (the committed code): both
    versions train and score the same data, the baseline's from the clone, and the MFU follows from the counts."""
    run(["cpu_limit.py", "--model", tiny_model, "--steps", "2", "--train-problems", "8", "--test-problems", "1",
         "--baseline", "HEAD", "--square", "128", "--peak-tokens", "64"], tmp_path)
    r = json.loads((tmp_path / "cpu_limit.json").read_text())
    base, new = r["versions"]["baseline"], r["versions"]["new"]
    assert "baseline-HEAD" in base["score"]["code"] and "baseline-HEAD" not in new["score"]["code"]
    for v in (base, new):
        assert v["train_lora"]["steps_timed"] == v["train_full"]["steps_timed"] == 2
        assert v["score"]["responses"] == 16 and v["score"]["forward_tokens"] == 2 * v["score"]["sequence_tokens"]
        peak = r["peaks"][r["precision"]]["peak_gflops"]
        want = v["train_lora"]["tokens_per_s"] * 2 * r["flops"]["forward_flops_per_token"] / (peak * 1e9)
        assert v["train_lora"]["mfu"] == pytest.approx(want)
    # the same data and model on both sides: the same tokens trained and scored
    assert base["train_lora"]["tokens_timed"] == new["train_lora"]["tokens_timed"]
    assert base["score"]["sequence_tokens"] == new["score"]["sequence_tokens"]
    prof = r["profile_new_train_lora"]  # the ops of the new code's LoRA loop, by self CPU time
    assert prof["top"] and sum(row["share"] for row in prof["top"]) <= 1 + 1e-9
    assert any(row["op"].startswith("aten::") for row in prof["top"])
    assert r["ratio_new_over_baseline"]["score"] == pytest.approx(
        new["score"]["forward_tokens_per_s"] / base["score"]["forward_tokens_per_s"])
