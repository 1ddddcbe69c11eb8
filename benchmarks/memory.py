"""Peak memory of per-token log-prob extraction for one long sequence: chunked (implicit-prm) against the full
log_softmax, each configuration in a fresh process so its peak resident memory is its own.

Chunked: `TokenLogProbs`, the LM head and log-softmax 256 tokens at a time (never a (T, V) tensor).
Naive: full logits (T, V) and a full-vocabulary log_softmax, as the reference implementation does.
Both run the same model forward under torch.no_grad() in fp32 on one sequence of random tokens.

    python benchmarks/memory.py [--lengths 2048 8192 32768] [--budget-gib 24]

Reports the peak resident memory above the loaded model (the extraction's own cost), and, from a linear fit of the
chunked peaks, the longest sequence whose extraction fits the budget with the model loaded. That longest length is
an extrapolation, labelled as such.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch
from common import naive_full_logprobs, reset_peak_rss, rss_mib, run_isolated, save, worker_result


def worker(args: dict) -> None:
    from implicit_prm.models.loading import load_model
    from implicit_prm.models.logprobs import TokenLogProbs

    torch.manual_seed(0)
    model = load_model(args["model"]).eval()
    n = args["length"]
    model.config.max_position_embeddings = max(model.config.max_position_embeddings, n)
    wrapped = TokenLogProbs(model)

    def run(length: int) -> torch.Tensor:
        ids = torch.randint(0, model.config.vocab_size, (1, length))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            if args["method"] == "chunked":
                return wrapped(ids, mask, 0)
            return naive_full_logprobs(model, ids, mask)

    run(64)  # warm-up: lazy allocations and kernels
    gc.collect()
    before = rss_mib()
    reset_peak_rss()
    t = time.perf_counter()
    lp = run(n)
    seconds = time.perf_counter() - t
    peak = rss_mib("VmHWM")
    assert lp.shape == (1, n - 1) and torch.isfinite(lp).all()
    worker_result({"method": args["method"], "length": n, "model_rss_mib": before, "peak_rss_mib": peak,
                   "extraction_peak_mib": peak - before, "seconds": seconds})


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 32768])
    ap.add_argument("--budget-gib", type=float, default=24.0)
    ap.add_argument("--naive-max-length", type=int, default=None,
                    help="skip the naive method above this length (it takes as long as chunked, about half an "
                         "hour at 32k on 2 cores, and needs 2 x length x vocab x 4 bytes)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    from implicit_prm.models.loading import load_model

    vocab = load_model(args.model).config.vocab_size
    rows = []
    for n in args.lengths:
        for method in ("chunked", "naive"):
            # The naive logits alone are n x vocab floats, twice over (logits and log_softmax output).
            need = 2 * n * vocab * 4 / 2**20
            if method == "naive" and args.naive_max_length and n > args.naive_max_length:
                rows.append({"method": method, "length": n, "skipped": f"over --naive-max-length; the logits and "
                             f"log_softmax alone are {need / 1024:.1f} GiB"})
                print(f"{method:8s} {n:6d}  skipped ({rows[-1]['skipped']})", flush=True)
                continue
            if method == "naive" and need * 1.2 > mem_available_mib():
                rows.append({"method": method, "length": n, "skipped": f"needs about {need / 1024:.1f} GiB for "
                             f"logits and log_softmax; {mem_available_mib() / 1024:.1f} GiB available"})
                print(f"{method:8s} {n:6d}  skipped ({rows[-1]['skipped']})", flush=True)
                continue
            r = run_isolated(__file__, {"model": args.model, "length": n, "method": method})
            rows.append({"method": method, "length": n, **r})
            if "error" in r:
                print(f"{method:8s} {n:6d}  failed: {r['error'][-300:]}", flush=True)
            else:
                print(f"{method:8s} {n:6d}  peak above model {r['extraction_peak_mib']:8.0f} MiB  "
                      f"({r['seconds']:.1f} s)", flush=True)

    ok = {(r["method"], r["length"]): r for r in rows if "extraction_peak_mib" in r}
    ratios = {n: ok[("chunked", n)]["extraction_peak_mib"] / ok[("naive", n)]["extraction_peak_mib"]
              for n in args.lengths if ("chunked", n) in ok and ("naive", n) in ok}
    chunked = sorted((n, ok[("chunked", n)]) for n in args.lengths if ("chunked", n) in ok)
    longest = None
    if len(chunked) >= 2:
        (n0, r0), (n1, r1) = chunked[-2], chunked[-1]
        per_token = (r1["extraction_peak_mib"] - r0["extraction_peak_mib"]) / (n1 - n0)
        room = args.budget_gib * 1024 - r1["model_rss_mib"]
        if per_token > 0:
            longest = int(n1 + (room - r1["extraction_peak_mib"]) / per_token)
        print(f"chunked: {per_token * 1024:.1f} KiB per token between {n0} and {n1}; a {args.budget_gib:g} GiB budget "
              f"fits about {longest} tokens (linear extrapolation, not run)")
    for n, q in ratios.items():
        print(f"length {n}: chunked peak = {q:.3f} x naive peak")
    save("memory", {"goal": "chunked peak at 8k <= 0.25 x naive", "vocab": vocab, "rows": rows,
                    "chunked_over_naive": {str(k): v for k, v in ratios.items()},
                    "longest_within_budget_extrapolated": longest, "budget_gib": args.budget_gib})


if __name__ == "__main__":
    sys.exit(main())
