"""The kernels the CPU speed work added, checked on the accelerator (no weights or network needed).

1. `HeadLogProbs` (models/logprobs.py, the fused LM-head log-probs of every training step): its log-probs and the
   gradients of the hidden states and of the head's weight against the naive full `log_softmax(h W^T)` on the same
   device, in float32 (tolerance 1e-4: the GPU's reduction order differs from the CPU's) and under bf16 autocast
   (log-probs within 0.05 nats, gradients within 3% of the largest entry: the tolerance tests/test_logprobs.py
   states), with and without a softcap and a logit scale. On CUDA it also records the peak memory of both on a
   Llama-3-sized head (vocabulary 128,256), where the naive path holds the full (N, V) logits and their gradient.
2. `--attn-implementation auto` (models/loading.py:attention_kernel): the kernel it picks on this device for
   inference and training, and that `load_model(..., attn_implementation="auto", device=...)` of a saved tiny
   Llama really loads it (SDPA on CUDA; eager on a CPU up to a training length of 512).
3. `--share-prompts` (steps/batching.py:SharedPack): a batch with each prompt computed once gives the unshared
   batch's summed log-probs and gradients (float32, within 1e-4) under eager and SDPA attention on this device.

Usage: python benchmarks/gpu_kernels.py [--tiny]   (benchmarks/gpu.sh runs it; --tiny: small head, any device)
Writes gpu_kernels.json (gpu_kernels_tiny.json with --tiny) to $OUT or benchmarks/results/; exits 1 on a mismatch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from implicit_prm.models.loading import attention_kernel, load_model
from implicit_prm.models.logprobs import HeadLogProbs

FP32_ATOL = 1e-4
BF16_LOGPROB_ATOL, BF16_GRAD_REL = 0.05, 0.03


def naive(hidden, weight, targets, softcap, scale):
    """The full log-softmax, written out independently of the fused path."""
    logits = (hidden @ weight.T).float()
    if scale is not None:
        logits = logits * scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]


def run_pair(fn, hidden, weight, targets, grad_out, autocast: bool):
    h = hidden.detach().clone().requires_grad_(True)
    w = weight.detach().clone().requires_grad_(True)
    with torch.autocast(hidden.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = fn(h, w, targets)
    out.backward(grad_out)
    return out.detach(), h.grad, w.grad


def check_head(device, n: int, hidden_size: int, vocab: int) -> list[dict]:
    """HeadLogProbs against the naive log-softmax: max differences per (precision, softcap, scale)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    hidden = torch.randn(n, hidden_size, generator=g).to(device)
    weight = (torch.randn(vocab, hidden_size, generator=g) * hidden_size ** -0.5).to(device)
    targets = torch.randint(0, vocab, (n,), generator=g).to(device)
    grad_out = torch.randn(n, generator=g).to(device)
    rows = []
    for autocast in (False, True):
        for softcap, scale in ((None, None), (30.0, 0.5)):
            dtype = torch.bfloat16 if autocast else torch.float32
            fused = run_pair(lambda h, w, t: HeadLogProbs.apply(h, w, None, t, 256, softcap, scale, dtype),
                             hidden, weight, targets, grad_out, autocast)
            ref = run_pair(lambda h, w, t: naive(h, w, t, softcap, scale), hidden, weight, targets, grad_out, autocast)
            diff = [float((a.float() - b.float()).abs().max()) for a, b in zip(fused, ref)]
            rel = [d / max(float(b.float().abs().max()), 1e-12) for d, b in zip(diff[1:], ref[1:])]
            ok = (all(d <= FP32_ATOL for d in diff) if not autocast
                  else diff[0] <= BF16_LOGPROB_ATOL and all(r <= BF16_GRAD_REL for r in rel))
            rows.append({"precision": "bf16 autocast" if autocast else "fp32", "softcap": softcap, "scale": scale,
                         "max_abs_logprob": diff[0], "max_abs_grad_hidden": diff[1], "max_abs_grad_weight": diff[2],
                         "rel_grad_hidden": rel[0], "rel_grad_weight": rel[1], "ok": ok})
            print(f"HeadLogProbs {rows[-1]}", flush=True)
    return rows


def head_memory(device, n: int = 4096, hidden_size: int = 2048, vocab: int = 128256) -> dict | None:
    """Peak GiB of one forward + backward of a bf16 Llama-3-1B head over n positions, fused against naive."""
    if device.type != "cuda":
        return None
    out = {"positions": n, "hidden": hidden_size, "vocab": vocab}
    hidden = torch.randn(n, hidden_size, device=device, dtype=torch.bfloat16)
    weight = torch.randn(vocab, hidden_size, device=device, dtype=torch.bfloat16) * hidden_size ** -0.5
    targets = torch.randint(0, vocab, (n,), device=device)
    for name, fn in (("fused", lambda h, w, t: HeadLogProbs.apply(h, w, None, t, 256, None, None, torch.bfloat16)),
                     ("naive", lambda h, w, t: naive(h, w, t, None, None))):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_pair(fn, hidden, weight, targets, torch.ones(n, device=device), False)
        torch.cuda.synchronize()
        out[f"{name}_peak_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    print(f"head memory {out}", flush=True)
    return out


def check_attention(device) -> dict:
    """attention_kernel's choices on this device, and the kernel a saved tiny Llama is really loaded with."""
    from transformers import LlamaConfig, LlamaForCausalLM

    want = {"inference": attention_kernel("auto", device), "train_512": attention_kernel("auto", device, 512),
            "train_1024": attention_kernel("auto", device, 1024)}
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, vocab_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        LlamaForCausalLM(cfg).save_pretrained(tmp)
        got = {"inference": load_model(tmp, attn_implementation="auto", device=device).config._attn_implementation,
               "train_512": load_model(tmp, attn_implementation="auto", device=device,
                                       train_max_length=512).config._attn_implementation}
    expect_eager = device.type == "cpu"
    ok = (got == {k: want[k] for k in got} and want["train_1024"] == "sdpa"
          and (want["inference"] == "eager") == expect_eager)
    out = {"chosen": want, "loaded": got, "ok": ok}
    print(f"attention {out}", flush=True)
    return out


def check_packed(device) -> list[dict]:
    """--share-prompts' packed rows (steps.batching.SharedPack) against the unshared batch on this device: summed
    log-probs and every parameter's gradient of a tiny random Llama, float32, for each attention kernel it takes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from implicit_prm.models.logprobs import TokenLogProbs
    from implicit_prm.steps.encoding import Encoded
    from implicit_prm.training.loop import sequence_logps

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, vocab_size=64)
    a, b = [1, 2, 3, 4, 5], [6, 7]
    seqs = [Encoded(p, r, [0] * len(r), 1) for p, r in ((a, [8, 9, 10]), (b, [11]), (a, [12, 13, 14, 15]),
                                                        (a, [16]), (b, [17, 18, 19]))]
    out = []
    for kind in ("eager", "sdpa"):
        torch.manual_seed(0)
        cfg._attn_implementation = kind
        model = TokenLogProbs(LlamaForCausalLM(cfg)).to(device)
        got = []
        for share in (False, True):
            model.zero_grad()
            lp = sequence_logps(model, seqs, 0, device, "fp32", share)
            (lp * torch.arange(1.0, 6.0, device=device)).sum().backward()
            got.append((lp.detach(), [p.grad.clone() for p in model.parameters()]))
        (lp0, g0), (lp1, g1) = got
        r = {"attention": kind, "max_abs_logp": float((lp0 - lp1).abs().max()),
             "max_abs_grad": max(float((x - y).abs().max()) for x, y in zip(g0, g1))}
        r["ok"] = r["max_abs_logp"] <= FP32_ATOL and r["max_abs_grad"] <= FP32_ATOL
        print(f"packed prompts {r}", flush=True)
        out.append(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a small head: a quick check on any device")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = (64, 32, 1000) if args.tiny else (2048, 2048, 128256)
    result = {"benchmark": "gpu_kernels", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "head_logprobs": check_head(device, *shape),
              "head_memory": head_memory(device), "attention": check_attention(device),
              "packed_prompts": check_packed(device)}
    result["ok"] = (all(r["ok"] for r in result["head_logprobs"] + result["packed_prompts"])
                    and result["attention"]["ok"])
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / ("gpu_kernels_tiny.json" if args.tiny else "gpu_kernels.json")).write_text(json.dumps(result, indent=2) + "\n")
    print(f"gpu_kernels: {'all checks passed' if result['ok'] else 'MISMATCH'}; wrote {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
