"""Every command once on the accelerator, checked against the same inputs on the CPU.

Saves a random-initialised Llama-shaped model and a character-level tokenizer with a ChatML template (built offline, no
weights or network needed) to a work folder, writes built-in arithmetic data, then runs through the real CLI:
- `train` (CE) for 1 and 2 steps, full fine-tune and LoRA, bf16 on the accelerator, and the 2-step runs again in
  fp32 on the CPU: the per-step losses must agree within bf16 tolerance, and the 1-step run's loss must equal the
  2-step run's first loss; LoRA again with `--share-prompts` (bf16 against fp32 on the CPU) and with `--compile on`
  besides (against the uncompiled run);
- `score` with the trained LoRA PRM: step rewards against the CPU's;
- `rollout` (greedy) and `search` (beam) with the model as policy and the trained PRM: the search's incremental step
  rewards against the CPU's `score` of the chosen solutions (greedy text is compared for information only: random
  models have near-ties that bf16 breaks differently);
- `serve` with a few requests to `/score` and `/get_reward`: the rewards against the CPU's `score`.
Each command runs in its own process with a global forward hook that records the device and dtype of every module
that runs, so a model left on the CPU is caught. Prints tokens/s and MFU (against the GPU's dense bf16 peak) for
scoring and training, and writes gpu_commands.json (or gpu_commands_tiny.json) to $OUT or benchmarks/results/.

Usage: python benchmarks/gpu_commands.py [--tiny] [--device cuda]   (benchmarks/gpu.sh runs it after gpu_bench.py)
       python benchmarks/gpu_commands.py child RESULT.json -- VERB ARGS...   (internal: one hooked CLI run)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, no sparsity
SHAPES = {  # a small Llama (about 100M parameters, a character vocabulary) and a tiny one for the CPU check
    "gpu": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=8, num_attention_heads=16,
                num_key_value_heads=4, head_dim=64),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16),
}
BF16_LOGPROB_ATOL = 0.02  # nats per token; see step_atol
WORKERS = 4  # runs at once (1 with --tiny: a 2-core CPU)
LOSS_ATOL = 0.02  # a CE loss near log 2: bf16 moves beta x (summed log-ratio) by a few hundredths at most
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# ---------------------------------------------------------------- the hooked child process
def child(result: Path, argv: list[str]) -> int:
    """Run one CLI command with a forward hook on every module; write where its parameters were."""
    import torch

    from implicit_prm.cli import main

    seen: dict[str, int] = {}

    def hook(module, _inputs):
        for p in module.parameters(recurse=False):
            key = f"{p.device.type}/{str(p.dtype).removeprefix('torch.')}"
            seen[key] = seen.get(key, 0) + 1
            break

    torch.nn.modules.module.register_module_forward_pre_hook(hook)
    t, rc = time.perf_counter(), 1
    try:
        rc = main(argv)
    except KeyboardInterrupt:
        rc = 0
    finally:
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        result.write_text(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "modules": seen,
                                      "peak_gib": peak}))
    return rc


def run(work: Path, name: str, argv: list[str]) -> dict:
    """One CLI run in a hooked child process; fails loudly with its output if it exits non-zero."""
    result = work / f"{name}.run.json"
    proc = subprocess.run([sys.executable, __file__, "child", str(result), "--", *argv], capture_output=True,
                          text=True)
    info = json.loads(result.read_text()) if result.exists() else {"rc": proc.returncode}
    if proc.returncode or info["rc"]:
        sys.exit(f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print(f"{name}: {info['seconds']:.1f} s, modules ran as {info['modules']}", flush=True)
    return info


def run_many(work: Path, jobs: dict[str, list[str]]) -> dict[str, dict]:
    """Independent CLI runs side by side (WORKERS at once: the accelerator's runs beside the CPU's)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(run, work, name, argv) for name, argv in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def on_device(info: dict, device: str) -> bool:
    return bool(info["modules"]) and all(k.startswith(device.split(":")[0] + "/") for k in info["modules"])


# ---------------------------------------------------------------- the model, the tokenizer and the data
def save_model(path: Path, shape: str) -> int:
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # one token per printable ASCII character: every sequence a random model samples decodes to text that
    # encodes back to the same tokens, so rewards of sampled steps can be recomputed from their text
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(specials + chars)}, merges=[],
                              unk_token="<|endoftext|>"))
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=False,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                      **SHAPES[shape])
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # spread the logits, so that log-probs differ between the PRM and its reference
        model.lm_head.weight.normal_(0, 0.5 if shape == "tiny" else 0.1)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- comparisons
def close(a: list[float], b: list[float], what: str, atol: list[float]) -> dict:
    """Each |a - b| within its own tolerance (bf16 against fp32: see `step_atol`)."""
    if len(a) != len(b):
        sys.exit(f"{what}: {len(a)} values against {len(b)}")
    diffs = [abs(x - y) for x, y in zip(a, b)]
    row = {"n": len(a), "max_abs_diff": max(diffs, default=0.0), "max_abs_value": max(map(abs, b), default=0.0),
           "worst_diff_over_tolerance": max((d / t for d, t in zip(diffs, atol)), default=0.0)}
    row["ok"] = row["worst_diff_over_tolerance"] <= 1.0
    print(f"  {what}: {json.dumps(row)}", flush=True)
    return row


def step_atol(records: list[dict], beta: float, text_key: str = "response") -> list[float]:
    """A step reward sums beta x (log-prob difference) over its tokens, and bf16 moves each log-prob by up to
    about BF16_LOGPROB_ATOL nats: so beta x 2 x that x the step's tokens (one per character here, plus two)."""
    out = []
    for r in records:
        lengths = ([e - s for s, e in r["step_spans"]] if text_key in r and "step_spans" in r
                   else [len(step) for step in r["steps"]])
        out += [beta * 2 * BF16_LOGPROB_ATOL * (n + 2) for n in lengths]
    return out


def flat(records: list[dict], key: str) -> list[float]:
    return [x for r in records for x in r[key]]


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "train_log.jsonl") if "loss" in r]


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float | None) -> float | None:
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12) if peak_tflops else None


# ---------------------------------------------------------------- the runs
def train_runs(w: Path, base: Path, data: Path, dev: str, p: dict) -> dict:
    common = ["train", "--model", str(base), "--data", str(data), "--objective", "ce", "--batch-size", "8",
              "--lr", "1e-4", "--warmup-ratio", "0", "--schedule", "constant", "--seed", "0"]
    jobs, where_of = {}, {}
    for kind, extra in (("full", []), ("lora", ["--lora", "--lora-r", "8"])):
        for tag, where, precision, steps in (("acc", dev, "bf16", 1), ("acc", dev, "bf16", 2),
                                             ("cpu", "cpu", "fp32", 2)):
            name = f"train_{kind}_{tag}_{steps}"
            where_of[name] = where
            jobs[name] = [*common, *extra, "--max-steps", str(steps), "--device", where, "--precision", precision,
                          "--output", str(w / name), "--logprob-cache", str(w / f"{name}.sqlite")]
    infos, out = run_many(w, jobs), {}
    for kind in ("full", "lora"):
        res = {}
        for name in (n for n in jobs if n.startswith(f"train_{kind}_")):
            res[name] = train_summary(w / name, infos[name], where_of[name])
        acc, cpu, one = res[f"train_{kind}_acc_2"], res[f"train_{kind}_cpu_2"], res[f"train_{kind}_acc_1"]
        res["losses_vs_cpu"] = close(acc["losses"], cpu["losses"], f"train {kind}: losses vs CPU",
                                     [LOSS_ATOL] * len(cpu["losses"]))
        res["one_step_is_first_step"] = abs(one["losses"][0] - acc["losses"][0]) <= 1e-3 * max(1, acc["losses"][0])
        # the last step's rate: 2 steps of a small model are dominated by start-up (gpu_bench.py measures more)
        res["mfu_last_step"] = mfu(acc["tokens_per_s"] or 0.0, (4 if kind == "lora" else 6) * p["matmul_params"],
                                   p["peak"])
        out[kind] = res
    out["speed_paths"] = speed_path_runs(w, common, dev)
    return out


def train_summary(run_dir: Path, info: dict, where: str) -> dict:
    """One train run's checks and figures: where its modules ran, its losses, time, memory and last rate."""
    log = read_jsonl(run_dir / "train_log.jsonl")
    return {"on_device": on_device(info, where), "losses": losses(run_dir), "seconds": info["seconds"],
            "peak_gib": info["peak_gib"], "tokens_per_s": log[-1].get("tokens_per_s")}


def speed_path_runs(w: Path, common: list[str], dev: str) -> dict:
    """The CPU speed work's training paths on the accelerator (LoRA, 2 steps): `--share-prompts` (each prompt once
    for its responses, a 4D mask) in bf16 against the same on the CPU in fp32, and `--compile on` (torch.compile of
    the decoder, dynamic shapes) with it against the uncompiled run, both within the loss tolerance."""
    lora = [*common, "--lora", "--lora-r", "8", "--max-steps", "2", "--share-prompts"]
    runs = {"shared_acc": (dev, "bf16", []), "shared_compiled_acc": (dev, "bf16", ["--compile", "on"]),
            "shared_cpu": ("cpu", "fp32", [])}
    jobs = {f"train_{name}": [*lora, "--device", where, "--precision", precision, *extra, "--output",
                              str(w / f"train_{name}"), "--logprob-cache", str(w / f"train_{name}.sqlite")]
            for name, (where, precision, extra) in runs.items()}
    infos, res = run_many(w, jobs), {}
    for name, (where, _, _) in runs.items():
        res[name] = train_summary(w / f"train_{name}", infos[f"train_{name}"], where)
    cpu, acc, comp = (res[k]["losses"] for k in ("shared_cpu", "shared_acc", "shared_compiled_acc"))
    res["shared_vs_cpu"] = close(acc, cpu, "train --share-prompts: losses vs CPU", [LOSS_ATOL] * len(cpu))
    res["compiled_vs_eager"] = close(comp, acc, "train --compile on: losses vs uncompiled", [LOSS_ATOL] * len(acc))
    return res


def inference_runs(w: Path, base: Path, prm: Path, data: Path, dev: str, p: dict) -> dict:
    """score (accelerator and CPU), rollout (greedy, both), search on the accelerator; then the CPU's score of
    the search's chosen solutions."""
    cache = ["--logprob-cache"]
    jobs = {f"score_{tag}": ["score", "--prm", str(prm), "--input", str(data), "--output",
                             str(w / f"score_{tag}.jsonl"), "--device", where, "--precision", precision, *cache,
                             str(w / f"score_{tag}.sqlite")]
            for tag, where, precision in (("acc", dev, "bf16"), ("cpu", "cpu", "fp32"))}
    jobs |= {f"rollout_{tag}": ["rollout", "--model", str(base), "--problems", str(data), "--output",
                                str(w / f"rollout_{tag}.jsonl"), "--n-samples", "2", "--temperature", "0",
                                "--max-new-tokens", "48", "--device", where]
             for tag, where in (("acc", dev), ("cpu", "cpu"))}
    jobs["search_acc"] = ["search", "--prm", str(prm), "--policy", str(base), "--problems", str(data), "--strategy",
                          "beam", "--n", "4", "--beam-width", "2", "--max-steps", "3", "--max-step-tokens", "24",
                          "--output", str(w / "search_acc.jsonl"), "--device", dev, "--precision", "bf16", *cache,
                          str(w / "search.sqlite")]
    infos = run_many(w, jobs)
    res = {name: {"on_device": on_device(info, dev if "_acc" in name else "cpu"), "seconds": info["seconds"],
                  "peak_gib": info["peak_gib"]} for name, info in infos.items()}
    acc, cpu = (read_jsonl(w / f"score_{k}.jsonl") for k in ("acc", "cpu"))
    res["score_step_rewards_vs_cpu"] = close(flat(acc, "step_rewards"), flat(cpu, "step_rewards"),
                                             "score: step rewards vs CPU", step_atol(cpu, p["beta"]))
    tokens = sum(len(p["tok"](r["prompt"] + r["response"])) for r in acc)
    rate = 2 * tokens / res["score_acc"]["seconds"]  # the PRM's and the reference's passes
    res["score_tokens_per_s_incl_loading"] = rate  # a whole command's wall time: a lower bound on the rate
    res["score_mfu_incl_loading"] = mfu(rate, 2 * p["matmul_params"], p["peak"])
    texts = [read_jsonl(w / f"rollout_{tag}.jsonl") for tag in ("acc", "cpu")]
    pairs = [(a, b) for ra, rb in zip(*texts) for a, b in zip(ra["completions"], rb["completions"])]
    res["rollout_greedy_text_agreement"] = sum(a == b for a, b in pairs) / max(len(pairs), 1)
    chosen = [r for r in read_jsonl(w / "search_acc.jsonl") if r.get("steps")]
    rescore = w / "search_chosen.jsonl"
    rescore.write_text("".join(json.dumps({"prompt": r["prompt"], "steps": r["steps"]}) + "\n" for r in chosen))
    run(w, "search_rescore_cpu", ["score", "--prm", str(prm), "--input", str(rescore), "--output",
                                  str(w / "search_rescore_cpu.jsonl"), "--device", "cpu", "--precision", "fp32",
                                  *cache, str(w / "score_cpu.sqlite")])
    res["search_step_rewards_vs_cpu_score"] = close(
        flat(chosen, "step_rewards"), flat(read_jsonl(w / "search_rescore_cpu.jsonl"), "step_rewards"),
        "search: chosen solutions' step rewards vs CPU score", step_atol(chosen, p["beta"], text_key="-"))
    return res


def serve_run(w: Path, prm: Path, data: Path, dev: str, p: dict) -> dict:
    port = 18000 + os.getpid() % 1000
    result = w / "serve.run.json"
    proc = subprocess.Popen([sys.executable, __file__, "child", str(result), "--", "serve", "--prm", str(prm),
                             "--port", str(port), "--device", dev, "--precision", "bf16", "--logprob-cache",
                             str(w / "serve.sqlite")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                sys.exit(f"serve exited early:\n{proc.stdout.read()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        rows = [r for r in read_jsonl(w / "score_cpu.jsonl") if "response" in r][:6]
        body = json.dumps([{"prompt": r["prompt"], "response": r["response"]} for r in rows]).encode()
        req = urllib.request.Request(url + "/score", body, {"Content-Type": "application/json"})
        got = json.loads(urllib.request.urlopen(req, timeout=120).read())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    info = json.loads(result.read_text())
    print(f"serve: modules ran as {info['modules']}", flush=True)
    got = got if isinstance(got, list) else got.get("results", got)
    res = {"on_device": on_device(info, dev), "requests": len(rows)}
    res["step_rewards_vs_cpu_score"] = close(flat(got, "step_rewards"), flat(rows, "step_rewards"),
                                             "serve: step rewards vs CPU score", step_atol(rows, p["beta"]))
    return res


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        sys.exit(child(Path(sys.argv[2]), sys.argv[4:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny model, on whatever device: checks the script")
    ap.add_argument("--device", default=None, help="the accelerator (default cuda when present, else cpu)")
    ap.add_argument("--workdir", default=None, help="keep the work files here (default: a temporary folder)")
    args = ap.parse_args()
    import torch
    from transformers import AutoTokenizer

    sys.path.insert(0, str(HERE))
    from common import machine

    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    shape = "tiny" if args.tiny else "gpu"
    w = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_commands_"))
    w.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_params = save_model(w / "base", shape)
    cfg = json.loads((w / "base" / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(w / "base")
    p = {"beta": 0.05, "peak": peak, "tok": lambda s: tok(s).input_ids,
         "matmul_params": n_params - cfg["vocab_size"] * cfg["hidden_size"]}  # the input embedding is a lookup
    global WORKERS
    WORKERS = 1 if args.tiny else WORKERS
    run_many(w, {f"data_{split}": ["data", "--output", str(w / f"{split}.jsonl"), "--n-problems", str(n),
                                   "--samples-per-problem", "2", "--seed", str(seed)]
                 for split, n, seed in (("train", 8, 1), ("test", 3, 2))})
    result = {"benchmark": "gpu_commands", "machine": machine(), "device": gpu, "torch": torch.__version__,
              "peak_bf16_tflops": peak, "model": {"shape": SHAPES[shape], "params": n_params},
              "tolerance": {"step_reward": f"beta x 2 x {BF16_LOGPROB_ATOL} nats x (the step's tokens + 2)",
                            "loss": LOSS_ATOL}}
    result["train"] = train_runs(w, w / "base", w / "train.jsonl", dev, p)
    prm = w / "train_lora_acc_2"
    result["inference"] = inference_runs(w, w / "base", prm, w / "test.jsonl", dev, p)
    result["serve"] = serve_run(w, prm, w / "test.jsonl", dev, p)
    result["seconds"] = time.perf_counter() - t0
    checks = {k: v for k, v in _checks(result)}
    result["failed_checks"] = [k for k, ok in checks.items() if not ok]
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / ("gpu_commands_tiny.json" if args.tiny else "gpu_commands.json")).write_text(
        json.dumps(result, indent=2) + "\n")
    print(f"{len(checks) - len(result['failed_checks'])}/{len(checks)} checks passed in {result['seconds']:.0f} s;"
          f" failed: {result['failed_checks'] or 'none'}; wrote {out}", flush=True)
    sys.exit(1 if result["failed_checks"] else 0)


def _checks(node, path=""):
    """Every boolean `on_device`, `ok` and `one_step_is_first_step` in the result, by its path."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("on_device", "ok", "one_step_is_first_step") and isinstance(v, bool):
                yield path + k, v
            else:
                yield from _checks(v, f"{path}{k}.")


if __name__ == "__main__":
    main()
