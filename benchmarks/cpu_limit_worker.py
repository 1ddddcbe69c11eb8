"""One measurement of cpu_limit.py, in its own process, against whichever implicit_prm is first on the path.

cpu_limit.py runs it once with this checkout's code and once with a clean clone of the baseline commit first on
PYTHONPATH, so it imports nothing of this checkout and only API that both versions have: the `train` command
(run as `python -m implicit_prm train`) and `ImplicitPRM.from_pretrained(...).encode / score_encoded`.

    python benchmarks/cpu_limit_worker.py train JSON   # {"out": dir, "flags": [...]}  -> RESULT {...}
    python benchmarks/cpu_limit_worker.py score JSON   # {"prm": dir, "data": file, "cache": file, "precision": p}
    python benchmarks/cpu_limit_worker.py profile JSON # {"out": dir, "flags": [...], "rows": 30}
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def where() -> str:
    import implicit_prm

    return str(Path(implicit_prm.__file__).resolve().parent)


def train(args: dict) -> dict:
    """`train` to its end; the loop's throughput in steady state (the first, warm-up step left out): real tokens
    (prompt + response, unpadded, as the train log counts them) over the seconds between the first and last
    logged steps."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "implicit_prm", "train", "--output", args["out"], *args["flags"]],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"code": where(), **steady_rate(Path(args["out"]) / "train_log.jsonl"),
            "wall_s_incl_load_and_reference": wall}


def steady_rate(train_log: Path) -> dict:
    """A train log's steady-state throughput: the first (warm-up) step left out, real tokens (prompt + response,
    unpadded, as the log counts them) over the seconds between the first and the last logged step."""
    log = [json.loads(line) for line in train_log.read_text().splitlines()]
    first, last = log[0], log[-1]
    secs, tokens = last["elapsed_s"] - first["elapsed_s"], last["tokens"] - first["tokens"]
    return {"steps_timed": len(log) - 1, "tokens_timed": tokens, "loop_s": secs, "tokens_per_s": tokens / secs,
            "s_per_step": secs / (len(log) - 1), "final_loss": last["loss"]}


def score(args: dict) -> dict:
    """Encode and score every response of `data` with a cold log-prob cache (the reference pass, then the PRM's),
    model loading and the weights' fingerprint left out. Forward tokens count each pass over each response's
    prompt + response (as the FLOPs ledger of `score` does), so a prompt shared by several responses counts once
    per response."""
    import torch

    from implicit_prm.data import read_samples
    try:
        from implicit_prm.scoring.implicit import ImplicitPRM
    except ImportError:  # the baseline's layout
        from implicit_prm.prm import ImplicitPRM

    torch.manual_seed(0)
    prm = ImplicitPRM.from_pretrained(args["prm"], precision=args["precision"], logprob_cache=args["cache"],
                                      device="cpu")
    _ = prm.own_key  # computed once per loaded PRM (and cached on disk): not part of scoring
    samples = read_samples(args["data"])
    t = time.perf_counter()
    encs = prm.encode(samples)
    recs = prm.score_encoded(encs)
    secs = time.perf_counter() - t
    tokens = sum(len(e) for e in encs if e is not None)
    return {"code": where(), "responses": len(recs), "sequence_tokens": tokens, "forward_tokens": 2 * tokens,
            "s": secs, "forward_tokens_per_s": 2 * tokens / secs,
            "first_rewards": [round(float(x), 5) for x in recs[0]["step_rewards"]]}


def profile(args: dict) -> dict:
    """torch.profiler over a `train` run whose reference log-probs are already cached (the flags name the same
    --logprob-cache as a finished run), so nearly all of it is the loop: the ops by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from implicit_prm.cli import main

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        rc = main(["train", "--output", args["out"], *args["flags"]])
        secs = time.perf_counter() - t
    if rc:
        raise SystemExit(f"train failed ({rc})")
    ops = prof.key_averages()
    top = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.get("rows", 30)]
    total = sum(e.self_cpu_time_total for e in ops)
    return {"code": where(), "s": secs, "self_cpu_total_s": total / 1e6,
            "top": [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total,
                     "calls": e.count} for e in top],
            "by_shape": [{"op": e.key, "shapes": str(e.input_shapes)[:160], "self_s": e.self_cpu_time_total / 1e6}
                         for e in sorted(prof.key_averages(group_by_input_shape=True),
                                         key=lambda e: e.self_cpu_time_total, reverse=True)[:args.get("rows", 30)]]}


if __name__ == "__main__":
    kind, payload = sys.argv[1], json.loads(sys.argv[2])
    print("RESULT " + json.dumps({"train": train, "score": score, "profile": profile}[kind](payload)), flush=True)
