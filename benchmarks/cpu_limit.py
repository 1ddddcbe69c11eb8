"""This CPU's limit, and how close `train` and `score` come to it, against a baseline commit, in one run.

1. Matmul peaks, bf16 and fp32: a large square (4096^3) and the embedded model's own shapes (a batch of 2048
   tokens through its q/o, MLP and LM-head matmuls). The best of several repeats: other jobs only ever add time.
2. `train` with the demo's recipe (its data: 200 built-in problems x 2, CE, LoRA r16 on all linear layers, lr 1e-4,
   beta 0.5, batch 8, max length 512, empty system prompt, `--precision auto`) and the same with all weights
   trained, steady-state loop throughput in real tokens (prompt + response, unpadded) per second.
3. `score` of the demo's test data (built-in problems x 16) with that LoRA PRM, cold log-prob cache: forward
   tokens per second (the reference pass and the PRM's, each prompt + response).

MFU: model FLOPs over the measured peak of the precision the run used. Per token: 2P forward (P: the matmul
parameters, LM head included), 4P for a LoRA step (forward and the input-gradient backward), 6P for a full one;
attention adds 2 x layers x hidden x (sequence length) per forward token (causal: the mean context is half the
sequence; QK^T and AV). A shared prompt computed once still counts once per response: it is work not done.

The baseline is the code of --baseline (default 44855a3), cloned fresh from this repository into a temporary
folder and put first on PYTHONPATH, so both versions run with this virtual environment's packages on the same data
files and the same machine, one after the other. Each measurement runs in its own process.

    python benchmarks/cpu_limit.py [--steps 12] [--test-problems 10] [--baseline 44855a3] [--no-full]

Prints a table and writes benchmarks/results/cpu_limit.json. Not a timed test: read the ratios.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from common import flops_per_token, run_isolated, save

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.precision import resolve_precision
from implicit_prm.data import read_samples
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.models.loading import DEFAULT_MODEL, load_tokenizer, resolve
from implicit_prm.steps.encoding import Encoder, encode_samples

HERE = Path(__file__).resolve().parent
WORKER = HERE / "cpu_limit_worker.py"
DEMO_FLAGS = ["--objective", "ce", "--lr", "1e-4", "--beta", "0.5", "--batch-size", "8", "--max-length", "512",
              "--system-prompt", "", "--precision", "auto", "--checkpoint-every", "0", "--no-progress",
              "--warmup-ratio", "0", "--seed", "0", "--epochs", "1000"]  # --max-steps ends it


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b  # warm-up: thread pool, kernels
    t = time.perf_counter()
    a @ b
    reps = min(1000, max(1, int(0.3 / max(time.perf_counter() - t, 1e-6))))  # about 0.3 s per timing
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * m * k * n / best / 1e9


def peaks(model_cfg, square: int, tokens: int) -> dict:
    """GFLOPS of each shape and dtype; the peak of a dtype is its best shape."""
    h, i, v = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.vocab_size
    shapes = {f"square {square}": (square, square, square), f"{tokens} x {h} x {i} (MLP up)": (tokens, h, i),
              f"{tokens} x {i} x {h} (MLP down)": (tokens, i, h), f"{tokens} x {h} x {h} (q, o)": (tokens, h, h),
              f"{tokens} x {h} x {v} (LM head)": (tokens, h, v)}
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        per = {s: matmul_gflops(*mkn, dtype) for s, mkn in shapes.items()}
        out[name] = {"shapes": per, "peak_gflops": max(per.values())}
        print(f"  {name} matmul GFLOPS: " + ", ".join(f"{s} {g:.0f}" for s, g in per.items()), flush=True)
    return out


def model_flops(model: str, model_cfg, data: Path) -> dict:
    """Forward FLOPs per real token of this data: 2P (matmuls, head included) and attention's mean term."""
    f_t, f_h = flops_per_token(model_cfg)
    tok = load_tokenizer(model)
    encs = [e for e in encode_samples(Encoder(tok, max_length=512, overlong="truncate", system_prompt=""),
                                      read_samples(str(data))) if e is not None]
    lengths = [len(e) for e in encs]
    attn = 2 * model_cfg.num_hidden_layers * model_cfg.hidden_size * sum(s * s for s in lengths) / sum(lengths)
    return {"matmul_params": (f_t + f_h) / 2, "forward_flops_per_token": f_t + f_h + attn,
            "attention_share": attn / (f_t + f_h + attn), "mean_tokens": sum(lengths) / len(lengths)}


def run_worker(kind: str, payload: dict, pythonpath: str | None) -> dict:
    got = run_isolated(str(WORKER), payload, None, [kind, json.dumps(payload)], pythonpath)
    if set(got) == {"error", "returncode"}:
        raise SystemExit(f"{kind} worker failed ({got['returncode']}):\n{got['error']}")
    return got


def baseline_clone(commit: str, tmp: Path) -> Path:
    """A clean clone of this repository at `commit`; its src/ goes first on PYTHONPATH."""
    root = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dst = tmp / f"baseline-{commit}"
    subprocess.run(["git", "clone", "-q", "--no-checkout", root, str(dst)], check=True)
    subprocess.run(["git", "-C", str(dst), "checkout", "-q", commit], check=True)
    return dst / "src"


def measure(name: str, src: str | None, args, data: dict, tmp: Path, precision: str) -> dict:
    """train (LoRA, then full unless --no-full) and score, one process each, for one version of the code."""
    steps = ["--max-steps", str(args.steps + 1), "--data", str(data["train"]), "--model", args.model]
    res = {}
    for mode, extra in (("train_lora", ["--lora"]), ("train_full", ["--no-lora", "--lr", "1e-5"])):
        if mode == "train_full" and not args.full:
            continue
        out = tmp / f"{name}-{mode}"
        res[mode] = run_worker("train", {"out": str(out), "flags": [*DEMO_FLAGS, *steps, *extra,
                                                                    "--logprob-cache", str(tmp / f"{name}.sqlite")]},
                               src)
        print(f"  {name} {mode}: {res[mode]['tokens_per_s']:.0f} tokens/s ({res[mode]['s_per_step']:.2f} s/step)",
              flush=True)
    res["score"] = run_worker("score", {"prm": str(tmp / f"{name}-train_lora"), "data": str(data["test"]),
                                        "cache": str(tmp / f"{name}-score.sqlite"), "precision": precision}, src)
    print(f"  {name} score: {res['score']['forward_tokens_per_s']:.0f} forward tokens/s", flush=True)
    return res


def add_mfu(res: dict, flops: dict, peak: float) -> None:
    per = flops["forward_flops_per_token"]
    for mode, mult in (("train_lora", 2), ("train_full", 3)):
        if mode in res:
            res[mode]["mfu"] = res[mode]["tokens_per_s"] * mult * per / (peak * 1e9)
    res["score"]["mfu"] = res["score"]["forward_tokens_per_s"] * per / (peak * 1e9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="timed training steps (one more warms up)")
    ap.add_argument("--train-problems", type=int, default=200, help="the demo's: 200 (x 2 responses)")
    ap.add_argument("--test-problems", type=int, default=10, help="scored problems (x 16 responses)")
    ap.add_argument("--baseline", default="44855a3", help="the commit to compare against ('' to skip)")
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True, help="also a full fine-tune")
    ap.add_argument("--name", default="cpu_limit", help="results file benchmarks/results/<name>.json")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the model (default: the embedded SmolLM2-135M)")
    ap.add_argument("--square", type=int, default=4096, help="side of the square matmul of the peak")
    ap.add_argument("--peak-tokens", type=int, default=2048, help="rows of the model-shaped matmuls of the peak")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="then profile the new code's LoRA training (torch.profiler, its reference cached)")
    args = ap.parse_args()
    from transformers import AutoConfig

    model_cfg = AutoConfig.from_pretrained(resolve(args.model))
    precision = resolve_precision(torch.device("cpu"), "auto")
    tmp = Path(tempfile.mkdtemp(prefix="cpu_limit_"))
    data = {"train": tmp / "train.jsonl", "test": tmp / "test.jsonl"}
    write_builtin(BuiltinDataConfig(output=str(data["train"]), n_problems=args.train_problems, samples_per_problem=2,
                                    balance=True, seed=1))  # the demo's train split (seed 0)
    write_builtin(BuiltinDataConfig(output=str(data["test"]), n_problems=args.test_problems, samples_per_problem=16,
                                    balance=False, seed=3))  # as the demo's test split
    print(f"precision (auto): {precision}", flush=True)
    pk = peaks(model_cfg, args.square, args.peak_tokens)
    flops = model_flops(args.model, model_cfg, data["train"])
    versions = {}
    if args.baseline:
        versions["baseline"] = measure("baseline", str(baseline_clone(args.baseline, tmp)), args, data, tmp, precision)
    versions["new"] = measure("new", None, args, data, tmp, precision)
    for res in versions.values():
        add_mfu(res, flops, pk[precision]["peak_gflops"])
    prof = profile_lora(args, data, tmp) if args.profile else None
    ratios = {}
    if "baseline" in versions:
        b, n = versions["baseline"], versions["new"]
        ratios = {m: n[m]["tokens_per_s"] / b[m]["tokens_per_s"] for m in ("train_lora", "train_full") if m in n}
        ratios["score"] = n["score"]["forward_tokens_per_s"] / b["score"]["forward_tokens_per_s"]
    print_table(versions, pk, precision, ratios)
    save(args.name, {"model": args.model, "precision": precision, "peaks": pk, "flops": flops, "baseline_commit": args.baseline or None,
                     "steps": args.steps, "train_responses": 2 * args.train_problems,
                     "scored_responses": 16 * args.test_problems, "versions": versions, "ratio_new_over_baseline": ratios,
                     "profile_new_train_lora": prof})


def profile_lora(args, data: dict, tmp: Path) -> dict:
    """The ops that take the new code's LoRA training time (its reference log-probs already cached)."""
    flags = [*DEMO_FLAGS, "--max-steps", str(args.steps + 1), "--data", str(data["train"]), "--model", args.model,
             "--lora", "--logprob-cache", str(tmp / "new.sqlite")]
    prof = run_worker("profile", {"out": str(tmp / "new-profile"), "flags": flags, "rows": 30}, None)
    print(f"\nprofile of the new code's LoRA training ({prof['s']:.1f} s, {prof['self_cpu_total_s']:.1f} s of ops):")
    for row in prof["top"][:15]:
        print(f"  {row['op']:40s} {row['self_s']:8.2f} s {100 * row['share']:5.1f}% {row['calls']:8d} calls")
    return prof


def print_table(versions: dict, pk: dict, precision: str, ratios: dict) -> None:
    print(f"\npeaks: bf16 {pk['bf16']['peak_gflops']:.0f} GFLOPS, fp32 {pk['fp32']['peak_gflops']:.0f} GFLOPS; "
          f"this run: {precision}")
    print(f"  {'':12s}" + "".join(f"{v + ' tok/s':>16s}{v + ' MFU':>14s}" for v in versions) + f"{'new/base':>10s}")
    for mode in ("train_lora", "train_full", "score"):
        if mode not in versions["new"]:
            continue
        key = "forward_tokens_per_s" if mode == "score" else "tokens_per_s"
        cells = "".join(f"{r[mode][key]:16.0f}{100 * r[mode]['mfu']:13.1f}%" for r in versions.values())
        print(f"  {mode:12s}{cells}" + (f"{ratios[mode]:10.2f}" if mode in ratios else ""))


if __name__ == "__main__":
    main()
