"""What the benchmarks share: machine facts, results files, benchmark data, peak memory, and the naive algorithm.

The naive algorithm is a faithful re-implementation of how the reference implementation of implicit PRMs scores and
trains (the code released with Yuan et al. 2024 and the PRIME repository):
- step boundaries come from re-tokenizing the prompt plus every step prefix;
- batches are padded in input order;
- every batch runs the PRM and the reference model, each with full logits and a full-vocabulary log_softmax.
Everything here is for measurement only; the product never imports it.
"""
from __future__ import annotations

import datetime
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from implicit_prm.core.io import write_json
from implicit_prm.core.results import machine

RESULTS = Path(os.environ.get("IMPLICIT_PRM_BENCH_RESULTS", Path(__file__).parent / "results"))
SHARED = Path(os.environ.get("IMPLICIT_PRM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def save(name: str, result: dict) -> Path:
    """benchmarks/results/<name>.json (atomically), stamped with the date, the machine and the command line."""
    result = {"benchmark": name, "date": datetime.date.today().isoformat(), "machine": machine(),
              "command": "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]), **result}
    path = RESULTS / f"{name}.json"
    write_json(path, result)
    print(f"wrote {path}")
    return path


# ---------------------------------------------------------------------------------------------------------- data

@dataclass
class Item:
    """One response to score: the prompt, its steps (joined by a blank line), and its outcome label."""

    prompt: str
    steps: list[str]
    label: int

    @property
    def response(self) -> str:
        return "\n\n".join(self.steps)


def processbench_items(n_per_split: int, seed: int = 0) -> list[Item]:
    """A seeded sample of ProcessBench gsm8k and math solutions, interleaved (input order = no length order)."""
    items = []
    for split in ("gsm8k", "math"):
        path = SHARED / "processbench" / f"{split}.json"
        recs = json.loads(path.read_text())
        for r in random.Random(seed).sample(recs, min(n_per_split, len(recs))):
            items.append(Item(r["problem"], r["steps"], int(r["final_answer_correct"])))
    random.Random(seed + 1).shuffle(items)
    return items


def builtin_items(n_problems: int, per_problem: int, seed: int = 0) -> list[Item]:
    """Built-in arithmetic-chain problems with `per_problem` sampled solutions each (as best-of-N scoring sees)."""
    from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts

    recs = generate_rollouts(BuiltinDataConfig(output="-", n_problems=n_problems, samples_per_problem=per_problem,
                                               balance=False, seed=seed))
    return [Item(r["prompt"], c.split("\n\n"), int(ok)) for r in recs
            for c, ok in zip(r["completions"], r["correctness"])]


def write_items(items: list[Item], path: Path) -> Path:
    """The items as a pre-split input file for `implicit-prm score` / `train`."""
    with open(path, "w") as f:
        for it in items:
            f.write(json.dumps({"problem": it.prompt, "steps": it.steps, "final_answer_correct": bool(it.label)}) + "\n")
    return path


def flops_per_token(cfg) -> tuple[float, float]:
    """(decoder, LM head) forward FLOPs per token of a Llama-shaped config: 2 x the decoder's matmul parameters
    (q, k, v, o and the gated MLP of every layer) and 2 x hidden x vocab. Attention's own term is left out."""
    h, heads = cfg.hidden_size, cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or h // heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    per_layer = 2 * h * heads * hd + 2 * h * kv * hd + 3 * h * cfg.intermediate_size
    return 2 * per_layer * cfg.num_hidden_layers, 2 * h * cfg.vocab_size


# -------------------------------------------------------------------------------------------------- peak memory

def reset_peak_rss() -> None:
    """Reset this process's peak resident set size to what is live now.

    First hand freed heap back to the OS (glibc malloc_trim), or memory that earlier work freed but the allocator
    kept would count as resident; then reset VmHWM (Linux: writing 5 to clear_refs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def rss_mib(field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_isolated(script: str, worker_args: dict, timeout: float | None = 3600, argv: list[str] | None = None,
                 pythonpath: str | None = None) -> dict:
    """Run `python script --worker JSON` (or `python script *argv`) in a fresh process (a clean peak-memory reading),
    `pythonpath` first on its PYTHONPATH; returns its RESULT line, or {"error", "returncode"} if it failed."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    argv = ["--worker", json.dumps(worker_args)] if argv is None else argv
    proc = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-3000:], "returncode": proc.returncode}
    return json.loads(lines[-1][len("RESULT "):])


def worker_result(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------ naive algorithm

def naive_step_token_ends(tok, prompt_text: str, steps: list[str]) -> tuple[list[int], list[int]]:
    """The reference way to find step boundaries: tokenize the prompt + each step prefix, read off the lengths.

    Returns (ids of prompt + whole response, token index where each step ends).
    """
    ends = []
    for k in range(1, len(steps) + 1):
        prefix = prompt_text + "\n\n".join(steps[:k])
        ends.append(len(tok(prefix, add_special_tokens=False)["input_ids"]))
    ids = tok(prompt_text + "\n\n".join(steps), add_special_tokens=False)["input_ids"]
    return ids, ends


def naive_full_logprobs(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T-1) log p(ids[:, 1:]) through full logits and a full-vocabulary log_softmax."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def naive_score(policy, ref, tok, items: list[Item], batch_size: int, beta: float, prompt_fn) -> tuple[list, dict]:
    """Step rewards of every item the reference way; returns (per-item step rewards, timing breakdown)."""
    t0 = time.perf_counter()
    encoded = []
    for it in items:
        p = prompt_fn(it.prompt)
        n_prompt = len(tok(p, add_special_tokens=False)["input_ids"])
        ids, ends = naive_step_token_ends(tok, p, it.steps)
        encoded.append((ids, n_prompt, ends))
    t_tok = time.perf_counter() - t0
    out = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    t1 = time.perf_counter()
    for s in range(0, len(encoded), batch_size):  # input order
        chunk = encoded[s:s + batch_size]
        width = max(len(c[0]) for c in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (x, _, _) in enumerate(chunk):
            ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        tok_r = beta * (naive_full_logprobs(policy, ids, mask) - naive_full_logprobs(ref, ids, mask))  # (B, T-1)
        for i, (x, n_prompt, ends) in enumerate(chunk):
            rewards, start = [], n_prompt
            for e in ends:  # token t is predicted at position t-1
                rewards.append(float(tok_r[i, start - 1:e - 1].sum()))
                start = e
            out.append(rewards)
    return out, {"tokenize_s": t_tok, "model_s": time.perf_counter() - t1, "total_s": time.perf_counter() - t0}


@torch.no_grad()
def dense_bound(models, n_tokens: int, row_len: int, rows_per_batch: int, vocab: int) -> float:
    """Seconds for each model's forward (full logits) over n_tokens packed into full rows: the physical bound."""
    g = torch.Generator().manual_seed(0)
    n_rows = max(1, round(n_tokens / row_len))
    t = time.perf_counter()
    for m in models:
        for s in range(0, n_rows, rows_per_batch):
            b = min(rows_per_batch, n_rows - s)
            ids = torch.randint(0, vocab, (b, row_len), generator=g)
            m(input_ids=ids).logits
    return time.perf_counter() - t


def perturbed_copy(src_dir: str, dst: Path, scale: float, seed: int) -> str:
    """A 'trained' checkpoint: the model with small seeded noise on every weight, saved as a full model."""
    from implicit_prm.models.loading import load_model, load_tokenizer

    model = load_model(src_dir)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.float().std().clamp(min=1e-8))
    model.save_pretrained(dst)
    load_tokenizer(src_dir).save_pretrained(dst)
    return str(dst)


def num(x, fmt: str) -> str:
    """A number in a table cell; missing (None) as nan."""
    return format(float("nan") if x is None else x, fmt)


def print_rows(rows: dict, columns: list, key_width: int = 12) -> None:
    """A fixed-width table of benchmark rows: the row's name, then per column (header, width, cell(row) -> str);
    a row without tokens_per_s is printed as failed, with the end of its error."""
    print("\n" + f"{'run':{key_width}s}" + "".join(f" {h:>{w}s}" for h, w, _ in columns))
    for key, r in rows.items():
        if "tokens_per_s" not in r:
            print(f"{key:{key_width}s} failed: {str(r.get('error', ''))[-300:]}")
            continue
        print(f"{key:{key_width}s}" + "".join(f" {cell(r):>{w}s}" for _, w, cell in columns))


def throughput_columns(ratio_header: str, ratio_key: str) -> list:
    """The columns every training benchmark prints: tokens/s, its ratio to the baseline, the ratio FLOP counts
    predict, seconds per step, and the peak and between-steps resident memory."""
    return [("tokens/s", 9, lambda r: num(r["tokens_per_s"], ".1f")),
            (ratio_header, max(7, len(ratio_header)), lambda r: num(r[ratio_key], ".2f")),
            ("FLOP ratio", 10, lambda r: num(r["flop_ratio"], ".2f")),
            ("s/step", 7, lambda r: num(r["s_per_step"], ".2f")),
            ("peak MiB", 9, lambda r: num(r["peak_rss_mib"], ".0f")),
            ("between", 8, lambda r: num(r.get("between_steps_rss_mib"), ".0f"))]
