"""The reward server under load: throughput with dynamic batching against one request at a time, and latency.

Two server processes in turn (`implicit-prm serve`, the model loaded once each):
- one at a time: --batch-window-ms 0 and a single client sending its requests in sequence;
- batched: --batch-window-ms 5 and --clients concurrent clients.
Each request is one {prompt, response} of about 100 tokens (built-in problems and solutions). Reported: requests
per second in each mode, their ratio, p50 / p99 latency, and the bound batching can reach on this machine: the
model's own tokens per second, in the server's precision, on the requests' sequences one at a time against one batch
of --clients of them (same forward, no server; best of 3).

    python benchmarks/serve_load.py [--prm smollm2-135m] [--clients 32] [--requests 128]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
from common import save


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def items(n: int) -> list[dict]:
    from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts

    recs = generate_rollouts(BuiltinDataConfig(output="-", n_problems=n, samples_per_problem=1, seed=11, balance=False))
    return [{"prompt": r["prompt"], "response": r["completions"][0]} for r in recs]


def start(prm: str, extra: list[str], window: float) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "implicit_prm", "serve", "--prm", prm, *extra, "--port", str(port),
                             "--batch-window-ms", str(window)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.25)
    raise RuntimeError("the server did not answer /health")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def post(port: int, body: dict) -> float:
    t = time.perf_counter()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/score", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        assert r.status == 200
        r.read()
    return time.perf_counter() - t


def load(port: int, work: list[dict], clients: int) -> tuple[float, list[float]]:
    """(seconds for all requests, latencies) with `clients` threads sharing the work."""
    lat: list[float] = []
    lock = threading.Lock()
    queue = list(work)

    def client():
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            s = post(port, body)
            with lock:
                lat.append(s)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, lat


def forward_bound(prm: str, work: list[dict], clients: int, precision: str = "auto", repeats: int = 3) -> dict:
    """Tokens per second of the bare model in the server's precision: `clients` requests' sequences (chat template,
    prompt, response; cut to the shortest) one at a time against one batch of all of them; best of `repeats`."""
    import torch

    from implicit_prm.core.distributed import default_device
    from implicit_prm.core.precision import autocast_context, resolve_precision
    from implicit_prm.models.chat import chat_text
    from implicit_prm.models.loading import load_model, load_tokenizer

    tok, lm, dev = load_tokenizer(prm), load_model(prm).eval(), default_device()
    seqs = [tok(chat_text(tok, w["prompt"], None) + w["response"], add_special_tokens=False)["input_ids"]
            for w in work[:clients]]
    n = min(len(s) for s in seqs)
    batch = torch.tensor([s[:n] for s in seqs])
    one = many = float("inf")
    with torch.no_grad(), autocast_context(dev, precision):
        lm(batch[:2])  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            for row in batch:
                lm(row[None])
            one = min(one, time.perf_counter() - t)
            t = time.perf_counter()
            lm(batch)
            many = min(many, time.perf_counter() - t)
    return {"tokens_per_s_one": batch.numel() / one, "tokens_per_s_batch": batch.numel() / many,
            "ratio": one / many, "tokens_per_sequence": n, "precision": resolve_precision(dev, precision)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prm", default="smollm2-135m")
    ap.add_argument("--server-args", default="--reference-free --logprob-cache none",
                    help="extra `serve` flags (one string); the log-prob cache is off, so both runs compute")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=128)
    args = ap.parse_args()
    work = items(args.requests)
    extra = args.server_args.split()
    proc, port = start(args.prm, extra, 0)
    try:
        post(port, work[0])  # warm-up
        seq_s, seq_lat = load(port, work, 1)
    finally:
        stop(proc)
    proc, port = start(args.prm, extra, 5)
    try:
        post(port, work[0])
        bat_s, bat_lat = load(port, work, args.clients)
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read())
    finally:
        stop(proc)
    pct = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    precision = extra[extra.index("--precision") + 1] if "--precision" in extra else "auto"
    bound = forward_bound(args.prm, work, args.clients, precision)
    result = {"setup": {"prm": args.prm, "server_args": args.server_args, "clients": args.clients,
                        "requests": args.requests},
              "one_at_a_time": {"requests_per_s": args.requests / seq_s, "p50_s": pct(seq_lat, 50),
                                "p99_s": pct(seq_lat, 99)},
              "batched": {"requests_per_s": args.requests / bat_s, "p50_s": pct(bat_lat, 50),
                          "p99_s": pct(bat_lat, 99), "batches": health["batches"]},
              "throughput_ratio": seq_s / bat_s, "forward_bound": bound}
    print(f"one at a time: {result['one_at_a_time']['requests_per_s']:.2f} req/s, p50 "
          f"{result['one_at_a_time']['p50_s']:.3f} s, p99 {result['one_at_a_time']['p99_s']:.3f} s")
    print(f"batched ({args.clients} clients): {result['batched']['requests_per_s']:.2f} req/s, p50 "
          f"{result['batched']['p50_s']:.3f} s, p99 {result['batched']['p99_s']:.3f} s, {health['batches']} batches")
    print(f"throughput ratio {result['throughput_ratio']:.2f}x; the bare model's batch-of-{args.clients} bound on "
          f"this CPU {bound['ratio']:.2f}x")
    save("serve_load", result)


if __name__ == "__main__":
    main()
