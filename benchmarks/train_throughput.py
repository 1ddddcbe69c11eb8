"""Training throughput: `implicit-prm train` against the naive loop, measured in the same process on the same data.

The naive loop is what a straightforward implementation does each step: a reference forward, a policy forward,
a full-vocabulary log_softmax over (B, T, V) for both, fp32, then backward and AdamW. Ours: reference log-probs
computed once (cached), chunked log-softmax over response positions only, bf16 autocast where it is fast.

    python benchmarks/train_throughput.py [--model smollm2-135m] [--steps 6] [--batch-size 8]

Prints a table and writes benchmarks/results/train_throughput.json. Not a timed test: read the ratios.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from implicit_prm.batching import pad_batch
from implicit_prm.data import read_samples
from implicit_prm.data.builtin import BuiltinDataConfig, write_builtin
from implicit_prm.encoding import Encoder, encode_samples
from implicit_prm.losses import ce_loss
from implicit_prm.models import load_model, load_tokenizer
from implicit_prm.train import TrainConfig, train

RESULTS = Path(__file__).parent / "results"


def naive_loop(model_spec: str, encs, labels, steps: int, batch: int, lr: float) -> dict:
    """Reference forward every step, fp32, full log_softmax; returns tokens/s over `steps` timed steps."""
    tok = load_tokenizer(model_spec)
    policy = load_model(model_spec)
    ref = copy.deepcopy(policy).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr)
    policy.train()

    def seq_logps(model, ids, mask, resp):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (lp * resp).sum(-1)

    times, n_tok = [], 0
    for step in range(steps + 1):  # step 0 warms up
        idx = [(step * batch + i) % len(encs) for i in range(batch)]
        seqs = [encs[i] for i in idx]
        ids, mask = pad_batch([e.ids for e in seqs], tok.pad_token_id, "cpu")
        resp = torch.zeros_like(mask[:, 1:], dtype=torch.float32)
        for i, e in enumerate(seqs):
            resp[i, len(e.prompt_ids) - 1:len(e) - 1] = 1
        t = time.perf_counter()
        with torch.no_grad():
            ref_lp = seq_logps(ref, ids, mask, resp)
        loss, _ = ce_loss(seq_logps(policy, ids, mask, resp), ref_lp,
                          torch.tensor([labels[i] for i in idx], dtype=torch.float32))
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step > 0:
            times.append(time.perf_counter() - t)
            n_tok += sum(len(e) for e in seqs)
    return {"tokens_per_s": n_tok / sum(times), "s_per_step": sum(times) / len(times)}


def ours(model_spec: str, data: Path, steps: int, batch: int, lr: float, lora: bool, dtype: str) -> dict:
    """`train` end to end; steady-state tokens/s from its own log (steps after the first), plus the ref pass."""
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    out = train(TrainConfig(data=str(data), output=str(tmp / "run"), model=model_spec, batch_size=batch, lr=lr,
                            max_steps=steps + 1, lora=lora, dtype=dtype, ref_cache=str(tmp / "ref.sqlite"),
                            checkpoint_every=0, progress=False, warmup_ratio=0.0))
    wall = time.perf_counter() - t
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    shutil.rmtree(tmp, ignore_errors=True)
    first, last = log[0], log[-1]  # steady state: leave out the first (warm-up) step, as for the naive loop
    tps = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {"tokens_per_s": tps, "s_per_step": (last["elapsed_s"] - first["elapsed_s"]) / (len(log) - 1),
            "wall_s_incl_load_and_ref_pass": wall}

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-5)
    args = ap.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "train.jsonl"
    n_resp = args.batch_size * (args.steps + 1)
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=n_resp // 2, samples_per_problem=2, seed=11))
    samples = read_samples(data)
    encs = encode_samples(Encoder(load_tokenizer(args.model), max_length=1024), samples)
    labels = [s.label for s in samples]
    mean_len = sum(len(e) for e in encs) / len(encs)

    rows = {"naive (ref fwd each step, fp32, full log_softmax)": naive_loop(args.model, encs, labels, args.steps,
                                                                           args.batch_size, args.lr)}
    for name, lora in (("implicit-prm full fine-tune", False), ("implicit-prm LoRA r=16", True)):
        rows[name] = ours(args.model, data, args.steps, args.batch_size, args.lr, lora, "auto")
    base = rows["naive (ref fwd each step, fp32, full log_softmax)"]["tokens_per_s"]
    print(f"\nmodel {args.model}, batch {args.batch_size} sequences of ~{mean_len:.0f} tokens, {args.steps} steps")
    print(f"{'loop':52s} {'tokens/s':>9s} {'x naive':>8s}")
    for name, r in rows.items():
        tps = r["tokens_per_s"]
        r["ratio_vs_naive"] = tps / base
        print(f"{name:52s} {tps:9.1f} {tps / base:8.2f}")
    result = {"benchmark": "train_throughput", "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
              "torch": torch.__version__, "command": "python benchmarks/train_throughput.py "
              + f"--model {args.model} --steps {args.steps} --batch-size {args.batch_size}",
              "mean_seq_tokens": mean_len, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
