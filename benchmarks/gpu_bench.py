"""GPU benchmark on random-initialized models built from configs (no weights, no network needed).

Measures in bf16:
- scoring tokens/s and model-FLOPs utilization (MFU) for Llama-3.2-1B and Llama-3.1-8B shaped models:
  implicit-prm's log-prob pass (length-bucketed batches, chunked head on response positions) against the naive
  algorithm (input-order padded batches, full logits and full-vocabulary log_softmax), one model pass each;
- a CE training step's tokens/s and peak memory for the 1B model, full fine-tune and LoRA r=16 (reference
  log-probs precomputed, as with the cache), and the naive step (reference forward every step, full log_softmax).

Run through benchmarks/gpu.sh; `--tiny` uses tiny configs so it can be checked on a CPU in a minute.
Writes benchmarks/results/gpu.json (or $OUT/gpu.json when OUT is set).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
from common import machine

from implicit_prm.losses import LossBatch, ce_loss
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.steps.batching import length_batches, pad_batch

CONFIGS = {  # the public shapes of these models
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, head_dim=64),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, head_dim=128),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=True, head_dim=16),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, no sparsity


def build(name: str, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**CONFIGS[name], max_position_embeddings=8192, rope_theta=500000.0,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    return model.eval()


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(model, ctx: float) -> float:
    """Forward FLOPs per token: 2 x matmul parameters + causal attention at mean context ctx."""
    c = model.config
    n = params(model) - c.vocab_size * c.hidden_size * (0 if c.tie_word_embeddings else 1)  # embedding: a lookup
    return 2 * n + 2 * 2 * ctx * c.num_attention_heads * c.head_dim * c.num_hidden_layers


def workload(n_seqs: int, vocab: int, seed: int = 0):
    """(prompt, response) token lists with ProcessBench-like lengths: prompts 60-200, responses 100-1000 tokens."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_seqs):
        p, r = rng.randint(60, 200), rng.randint(100, 1000)
        out.append(([rng.randrange(vocab) for _ in range(p)], [rng.randrange(vocab) for _ in range(r)]))
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def score_ours(model, seqs, device, batch_tokens: int) -> float:
    wrapped = TokenLogProbs(model)
    lengths = [len(p) + len(r) for p, r in seqs]
    sync(device)
    t = time.perf_counter()
    for idx in length_batches(lengths, batch_tokens):
        batch = [seqs[i] for i in idx]
        ids, mask = pad_batch([p + r for p, r in batch], 0, device)
        start = min(len(p) for p, _ in batch) - 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            wrapped(ids, mask, start)
    sync(device)
    return time.perf_counter() - t


@torch.no_grad()
def score_naive(model, seqs, device, batch_size: int) -> float:
    sync(device)
    t = time.perf_counter()
    for s in range(0, len(seqs), batch_size):
        batch = seqs[s:s + batch_size]
        ids, mask = pad_batch([p + r for p, r in batch], 0, device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1))
    sync(device)
    return time.perf_counter() - t


def train_steps(model, seqs, device, steps: int, lora: bool, naive: bool, batch: int) -> dict:
    """CE steps on `batch` sequences; ours: cached reference log-probs, chunked head; naive: ref forward + full."""
    import copy

    ref = copy.deepcopy(model).eval() if naive else None
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    wrapped = TokenLogProbs(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, n_tok = [], 0
    for step in range(steps + 1):
        chunk = seqs[step * batch:(step + 1) * batch]
        ids, mask = pad_batch([p + r for p, r in chunk], 0, device)
        resp = torch.zeros(ids.shape[0], ids.shape[1] - 1, device=device)
        for i, (p, r) in enumerate(chunk):
            resp[i, len(p) - 1:len(p) + len(r) - 1] = 1
        labels = torch.tensor([i % 2 for i in range(len(chunk))], dtype=torch.float32, device=device)
        sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if naive:
                with torch.no_grad():
                    lg = ref(input_ids=ids, attention_mask=mask).logits[:, :-1]
                    ref_lp = (torch.log_softmax(lg.float(), -1).gather(-1, ids[:, 1:, None])[..., 0] * resp).sum(-1)
                lg = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                pol = (torch.log_softmax(lg.float(), -1).gather(-1, ids[:, 1:, None])[..., 0] * resp).sum(-1)
            else:
                ref_lp = torch.zeros(len(chunk), device=device)  # from the cache: no forward
                pol = (wrapped(ids, mask, 0) * resp).sum(-1)
            loss = ce_loss(LossBatch(labels, pol, ref_lp)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if step > 0:
            times.append(time.perf_counter() - t)
            n_tok += int(mask.sum())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"tokens_per_s": n_tok / sum(times), "s_per_step": sum(times) / len(times), "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny configs on whatever device: a quick check")
    ap.add_argument("--n-seqs", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    models = ["tiny"] if args.tiny else ["llama-3.2-1b", "llama-3.1-8b"]
    result = {"benchmark": "gpu", "machine": machine(), "device": name, "peak_bf16_tflops": peak, "scoring": {},
              "training": {}}
    n = 8 if args.tiny else args.n_seqs
    for m in models:
        model = build(m, device, dtype)
        seqs = workload(n, model.config.vocab_size)
        n_tok = sum(len(p) + len(r) for p, r in seqs)
        ctx = sum((len(p) + len(r)) ** 2 for p, r in seqs) / n_tok / 2  # mean causal context per token
        score_ours(model, seqs[:4], device, 16384)  # warm-up
        t_ours = score_ours(model, seqs, device, 16384)
        t_naive = score_naive(model, seqs, device, 8)
        fpt = flops_per_token(model, ctx)
        row = {"params": params(model), "tokens": n_tok, "ours_s": t_ours, "naive_s": t_naive,
               "ours_tokens_per_s": n_tok / t_ours, "naive_tokens_per_s": n_tok / t_naive,
               "speedup": t_naive / t_ours, "flops_per_token": fpt,
               "mfu": (fpt * n_tok / t_ours / 1e12 / peak) if peak else None}
        result["scoring"][m] = row
        print(f"scoring {m}: {json.dumps(row)}", flush=True)
        if m != "llama-3.1-8b":  # 8B: scoring only
            batch = 4 if args.tiny else 8
            tseqs = workload(batch * (args.train_steps + 1), model.config.vocab_size, seed=1)
            for label, lora, naive in (("full", False, False), ("lora", True, False), ("naive_full", False, True)):
                fresh = build(m, device, dtype)
                r = train_steps(fresh, tseqs, device, args.train_steps, lora, naive, batch)
                result["training"][f"{m}/{label}"] = r
                print(f"train {m}/{label}: {json.dumps(r)}", flush=True)
                del fresh
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / ("gpu_tiny.json" if args.tiny else "gpu.json")).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
