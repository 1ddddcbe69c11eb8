"""Training throughput and peak memory: `implicit-prm train` against the naive loop, CE and DPO, full and LoRA.

The naive loop is what a straightforward implementation does each step: a reference forward, a policy forward,
a full-vocabulary log_softmax over (B, T, V) for both, fp32, batches padded in input order, then backward and
AdamW. Ours: reference log-probs computed once (cached), chunked log-softmax over response positions only, batches
of similar length, bf16 autocast where it is fast (not on AVX2-only CPUs, where it resolves to fp32).

Each configuration runs in a fresh process. Throughput and peak resident memory are steady state: the first
(warm-up) step is left out on both sides, and the peak is reset after it, so it holds weights, gradients,
optimizer states and one step's activations, not loading or ours' one-time reference pass (whose peak is reported
apart as setup_peak_rss_mib). Freed heap is handed back to the OS before the reset, and the resident memory right
then is reported as between_steps_rss_mib: what stays live from step to step (weights, optimizer states, runtime).

    python benchmarks/train_throughput.py [--steps 4] [--batch-size 8] [--objectives ce dpo] [--data builtin]

Prints a table and writes benchmarks/results/train_throughput.json. Not a timed test: read the ratios.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch
from common import (
    flops_per_token,
    naive_full_logprobs,
    num,
    print_rows,
    processbench_items,
    reset_peak_rss,
    rss_mib,
    run_isolated,
    save,
    throughput_columns,
    worker_result,
    write_items,
)
from cpu_limit_worker import steady_rate


def make_data(kind: str, n: int, path: Path) -> Path:
    """n responses: built-in problems with one right and one wrong solution, or ProcessBench solutions."""
    if kind == "builtin":
        from implicit_prm.collect.builtin import write_builtin
        from implicit_prm.data.builtin import BuiltinDataConfig

        write_builtin(BuiltinDataConfig(output=str(path), n_problems=max(1, n // 2), samples_per_problem=2, seed=11))
        return path
    return write_items(processbench_items(n // 2 + 1, seed=4)[:n], path)  # one solution per problem: CE only


def flop_ratio(model: str, data: Path, max_length: int) -> dict:
    """The ratio to naive that FLOP counts predict, from the model config and the data's token counts.

    Per token, the decoder costs f_t = 2 x (its matmul parameters) forward and the LM head f_h = 2 x H x V; a
    backward costs two forwards, or one where the weights are frozen (LoRA: input gradients only).
    naive:  reference and policy forward plus backward, head on every position:  4 (f_t + f_h) T
    full:   forward, backward; head on response positions, recomputed in backward: 3 f_t T + 4 f_h R
    LoRA:   forward, input-gradient backward:                                     2 f_t T + 3 f_h R
    with T all tokens and R response tokens. Attention's own T^2 term is left out (small at these lengths). The
    naive loop also moves its (B, T, V) logits, log_softmax and their gradients through memory, which FLOPs do not
    count, so a measured ratio can exceed this one; to reach 3x, ours would have to do a third of naive's FLOPs.
    """
    from transformers import AutoConfig

    from implicit_prm.data import read_samples
    from implicit_prm.models.loading import load_tokenizer, resolve
    from implicit_prm.steps.encoding import Encoder, encode_samples

    f_t, f_h = flops_per_token(AutoConfig.from_pretrained(resolve(model)))
    tok = load_tokenizer(model)
    encs = [e for e in encode_samples(Encoder(tok, max_length=max_length, overlong="truncate", system_prompt=""),
                                      read_samples(str(data))) if e is not None]
    t = sum(len(e) for e in encs) / len(encs)
    r = sum(len(e.response_ids) for e in encs) / len(encs)
    naive = 4 * (f_t + f_h) * t
    return {"tokens_per_sequence": t, "response_tokens_per_sequence": r, "decoder_flops_per_token": f_t,
            "head_flops_per_token": f_h, "full": naive / (3 * f_t * t + 4 * f_h * r),
            "lora": naive / (2 * f_t * t + 3 * f_h * r)}


def naive(args: dict) -> dict:
    from implicit_prm.data import read_samples
    from implicit_prm.data.pairs import build_pairs
    from implicit_prm.losses import LossBatch, ce_loss, dpo_loss
    from implicit_prm.models.loading import load_model, load_tokenizer
    from implicit_prm.steps.batching import pad_batch
    from implicit_prm.steps.encoding import Encoder, encode_samples

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
            order = torch.cat([torch.arange(0, len(seqs), 2), torch.arange(1, len(seqs), 2)])  # chosen, then rejected
            labels = torch.tensor([1.0] * len(chunk) + [0.0] * len(chunk))
            loss = dpo_loss(LossBatch(labels, pol_lp[order], ref_lp[order])).loss
        else:
            labels = torch.tensor([samples[u[0]].label for u in chunk], dtype=torch.float32)
            loss = ce_loss(LossBatch(labels, pol_lp, ref_lp)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step == 0:
            setup_peak = rss_mib("VmHWM")  # loading and the warm-up step
            reset_peak_rss()  # the steady-state peak: optimizer states exist from here on
            between = rss_mib()  # live between steps: weights (two copies), optimizer states, runtime
        if step > 0:
            times.append(time.perf_counter() - t)
            n_tok += sum(len(e) for e in seqs)
    return {"tokens_per_s": n_tok / sum(times), "s_per_step": sum(times) / len(times),
            "peak_rss_mib": rss_mib("VmHWM"), "setup_peak_rss_mib": setup_peak, "between_steps_rss_mib": between}


def watch_training(log_path: Path, steps: int, peaks: dict, stop: threading.Event) -> None:
    """In a thread beside train(): once the warm-up step is logged, reset the peak RSS; when the last timed step
    is logged, read it. So the peak covers the timed steps only: not loading, the reference pass or saving."""
    reset = False
    while not stop.is_set():
        n = len(log_path.read_text().splitlines()) if log_path.exists() else 0
        if n >= 1 and not reset:
            peaks["setup_peak_rss_mib"] = rss_mib("VmHWM")  # loading, reference pass and the warm-up step
            reset_peak_rss()
            peaks["between_steps_rss_mib"] = rss_mib()  # live between steps: weights, optimizer states, runtime
            reset = True
        if reset and n >= steps + 1:
            peaks["peak_rss_mib"] = rss_mib("VmHWM")
            return
        time.sleep(0.02)


def ours(args: dict) -> dict:
    from implicit_prm.training.config import TrainConfig
    from implicit_prm.training.loop import train

    tmp = Path(tempfile.mkdtemp())
    peaks: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_training, args=(tmp / "run" / "train_log.jsonl", args["steps"], peaks,
                                                            stop), daemon=True)
    watcher.start()
    t = time.perf_counter()
    out = train(TrainConfig(data=args["data"], output=str(tmp / "run"), model=args["model"],
                            objective=args["objective"], batch_size=args["batch_size"], lr=1e-5,
                            max_steps=args["steps"] + 1, lora=args["lora"], precision="auto",
                            logprob_cache=str(tmp / "ref.sqlite"), checkpoint_every=0, progress=False, warmup_ratio=0.0,
                            system_prompt="", max_length=args["max_length"], overlong="truncate"))
    wall = time.perf_counter() - t
    stop.set()
    watcher.join()
    if "peak_rss_mib" not in peaks:  # steps too fast to watch (tiny test models): the whole run's peak
        peaks["peak_rss_mib"], peaks["peak_scope"] = rss_mib("VmHWM"), "whole run"
    rate = steady_rate(out / "train_log.jsonl")  # the first (warm-up) step left out, as for the naive loop
    shutil.rmtree(tmp, ignore_errors=True)
    return {"tokens_per_s": rate["tokens_per_s"], "s_per_step": rate["s_per_step"],
            "wall_s_incl_load_and_ref_pass": wall, "peak_rss_mib": peaks.get("peak_rss_mib"),
            "setup_peak_rss_mib": peaks.get("setup_peak_rss_mib"), "peak_scope": peaks.get("peak_scope", "timed steps"),
            "between_steps_rss_mib": peaks.get("between_steps_rss_mib")}


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
    bound = flop_ratio(args.model, data, args.max_length)
    print(f"The ratio to naive that FLOP counts predict: full {bound['full']:.2f}x, LoRA {bound['lora']:.2f}x "
          f"({bound['tokens_per_sequence']:.0f} tokens per sequence, {bound['response_tokens_per_sequence']:.0f} "
          "of them response)", flush=True)
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
    for key, r in rows.items():
        if "tokens_per_s" in r:
            base = rows[key.split("/")[0] + "/naive"].get("tokens_per_s")
            r["ratio_vs_naive"] = r["tokens_per_s"] / base if base else None
            r["flop_ratio"] = bound.get(key.split("/")[1], 1.0)
    print_rows(rows, throughput_columns("x naive", "ratio_vs_naive")
               + [("setup MiB", 9, lambda r: num(r["setup_peak_rss_mib"], ".0f"))])
    save("train_throughput", {"goal": "ours >= 3x naive tokens/s", "data": args.data, "flop_ratio": bound,
                              "batch_size_sequences": args.batch_size, "rows": rows})
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
