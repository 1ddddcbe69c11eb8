"""Training throughput and peak memory: `implicit-prm train` against the naive loop, CE and DPO, full and LoRA.

The naive loop is what a straightforward implementation does each step: a reference forward, a policy forward,
a full-vocabulary log_softmax over (B, T, V) for both, fp32, batches padded in input order, then backward and
AdamW. Ours: reference log-probs computed once (cached), chunked log-softmax over response positions only, batches
of similar length, bf16 autocast where it is fast (not on AVX2-only CPUs, where it resolves to fp32).

Each configuration runs in a fresh process, so its peak resident memory is its own. Throughput is steady state:
the first (warm-up) step is left out on both sides; ours' one-time reference pass is reported apart.

    python benchmarks/train_throughput.py [--steps 4] [--batch-size 8] [--objectives ce dpo] [--data builtin]

Prints a table and writes benchmarks/results/train_throughput.json. Not a timed test: read the ratios.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from common import (naive_full_logprobs, processbench_items, reset_peak_rss, rss_mib, run_isolated,
                    save, worker_result, write_items)


def make_data(kind: str, n: int, path: Path) -> Path:
    """n responses: built-in problems with one right and one wrong solution, or ProcessBench solutions."""
    if kind == "builtin":
        from implicit_prm.data.builtin import BuiltinDataConfig, write_builtin

        write_builtin(BuiltinDataConfig(output=str(path), n_problems=max(1, n // 2), samples_per_problem=2, seed=11))
        return path
    return write_items(processbench_items(n // 2 + 1, seed=4)[:n], path)  # one solution per problem: CE only


def naive(args: dict) -> dict:
    from implicit_prm.batching import pad_batch
    from implicit_prm.data import read_samples
    from implicit_prm.data.pairs import build_pairs
    from implicit_prm.encoding import Encoder, encode_samples
    from implicit_prm.losses import ce_loss, dpo_loss
    from implicit_prm.models import load_model, load_tokenizer

    tok = load_tokenizer(args["model"])
    samples = read_samples(args["data"])
    encoder = Encoder(tok, max_length=args["max_length"], overlong="truncate", system_prompt="")
    encs = encode_samples(encoder, samples)
    if args["objective"] == "dpo":
        pairs, _ = build_pairs(samples, None, 0)
        pos = {id(s): i for i, s in enumerate(samples)}
        units = [(pos[id(c)], pos[id(r)]) for c, r in pairs]
    else:
        units = [(i,) for i in range(len(samples))]
    policy = load_model(args["model"])
    ref = copy.deepcopy(policy).eval()  # the frozen reference: a second copy of the weights
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    policy.train()
    reset_peak_rss()

    def seq_logps(model, seqs):
        ids, mask = pad_batch([e.ids for e in seqs], tok.pad_token_id, "cpu")  # input order
        resp = torch.zeros_like(mask[:, 1:], dtype=torch.float32)
        for i, e in enumerate(seqs):
            resp[i, len(e.prompt_ids) - 1:len(e) - 1] = 1
        return (naive_full_logprobs(model, ids, mask) * resp).sum(-1)

    times, n_tok, b = [], 0, args["batch_size"]
    for step in range(args["steps"] + 1):  # step 0 warms up
        chunk = [units[(step * b + i) % len(units)] for i in range(b)]
        seqs = [encs[j] for u in chunk for j in u]
        t = time.perf_counter()
        with torch.no_grad():
            ref_lp = seq_logps(ref, seqs)
        pol_lp = seq_logps(policy, seqs)
        if args["objective"] == "dpo":
            loss, _ = dpo_loss(pol_lp[0::2], ref_lp[0::2], pol_lp[1::2], ref_lp[1::2])
        else:
            loss, _ = ce_loss(pol_lp, ref_lp, torch.tensor([samples[u[0]].label for u in chunk], dtype=torch.float32))
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step > 0:
            times.append(time.perf_counter() - t)
            n_tok += sum(len(e) for e in seqs)
    return {"tokens_per_s": n_tok / sum(times), "s_per_step": sum(times) / len(times),
            "peak_rss_mib": rss_mib("VmHWM")}


def ours(args: dict) -> dict:
    from implicit_prm.train import TrainConfig, train

    tmp = Path(tempfile.mkdtemp())
    reset_peak_rss()
    t = time.perf_counter()
    out = train(TrainConfig(data=args["data"], output=str(tmp / "run"), model=args["model"],
                            objective=args["objective"], batch_size=args["batch_size"], lr=1e-5,
                            max_steps=args["steps"] + 1, lora=args["lora"], dtype="auto",
                            ref_cache=str(tmp / "ref.sqlite"), checkpoint_every=0, progress=False, warmup_ratio=0.0,
                            system_prompt="", max_length=args["max_length"], overlong="truncate"))
    wall = time.perf_counter() - t
    peak = rss_mib("VmHWM")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    shutil.rmtree(tmp, ignore_errors=True)
    first, last = log[0], log[-1]  # steady state: leave out the first (warm-up) step, as for the naive loop
    train_s = last["elapsed_s"] - first["elapsed_s"]
    return {"tokens_per_s": (last["tokens"] - first["tokens"]) / train_s, "s_per_step": train_s / (len(log) - 1),
            "wall_s_incl_load_and_ref_pass": wall, "peak_rss_mib": peak}


def worker(args: dict) -> None:
    torch.manual_seed(0)
    worker_result(naive(args) if args["kind"] == "naive" else ours(args))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=4, help="timed steps after one warm-up step")
    ap.add_argument("--batch-size", type=int, default=8, help="sequences per step (DPO: half as many pairs)")
    ap.add_argument("--objectives", nargs="+", default=["ce", "dpo"], choices=["ce", "dpo"])
    ap.add_argument("--data", choices=["builtin", "processbench"], default="builtin")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.data == "processbench" and "dpo" in args.objectives:
        ap.error("ProcessBench has one solution per problem: no (right, wrong) pairs for DPO; use --objectives ce")
    tmp = Path(tempfile.mkdtemp())
    data = make_data(args.data, args.batch_size * (args.steps + 1), tmp / "train.jsonl")
    rows = {}
    for objective in args.objectives:
        b = args.batch_size // 2 if objective == "dpo" else args.batch_size  # DPO: pairs, two sequences each
        common = {"model": args.model, "data": str(data), "objective": objective, "steps": args.steps,
                  "batch_size": b, "max_length": args.max_length}
        for name, extra in (("naive", {"kind": "naive"}), ("full", {"kind": "ours", "lora": False}),
                            ("lora", {"kind": "ours", "lora": True})):
            r = run_isolated(__file__, {**common, **extra})
            rows[f"{objective}/{name}"] = r
            print(f"{objective}/{name}: {r}", flush=True)
    print(f"\n{'run':12s} {'tokens/s':>9s} {'x naive':>8s} {'s/step':>7s} {'peak MiB':>9s}")
    for key, r in rows.items():
        if "tokens_per_s" not in r:
            print(f"{key:12s} failed")
            continue
        base = rows[key.split("/")[0] + "/naive"].get("tokens_per_s")
        r["ratio_vs_naive"] = r["tokens_per_s"] / base if base else None
        print(f"{key:12s} {r['tokens_per_s']:9.1f} {r['ratio_vs_naive'] or 0:8.2f} {r['s_per_step']:7.2f} "
              f"{r['peak_rss_mib']:9.0f}")
    save("train_throughput", {"goal": "ours >= 3x naive tokens/s", "data": args.data,
                              "batch_size_sequences": args.batch_size, "rows": rows})
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
