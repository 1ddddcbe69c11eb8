"""Per-token log-probs of a causal LM, chunked over positions so the full (B, T, V) log-softmax never exists."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def chunked_token_logprobs(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor, chunk: int = 256,
                           softcap: float | None = None, scale: float | None = None) -> torch.Tensor:
    """log p(targets) from final hidden states, `chunk` positions at a time.

    hidden: (B, T, H) states that predict targets (B, T). Returns (B, T) float32 log-probs.
    Each chunk computes logits (B, chunk, V) in float32, takes logit[target] - logsumexp(logits), and drops them.
    Under autograd each chunk is checkpointed, so backward recomputes its logits instead of storing them.
    """
    def one(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = head(h).float()  # (B, c, V)
        if scale is not None:
            logits = logits * scale
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        picked = logits.gather(-1, t.unsqueeze(-1)).squeeze(-1)  # (B, c)
        return picked - torch.logsumexp(logits, dim=-1)

    outs = []
    for s in range(0, hidden.shape[1], chunk):
        h, t = hidden[:, s:s + chunk], targets[:, s:s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            outs.append(checkpoint(one, h, t, use_reentrant=False))
        else:
            outs.append(one(h, t))
    return torch.cat(outs, dim=1)  # (B, T)


def full_token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The naive way: a full-vocabulary log_softmax over (B, T, V). Kept for benchmarks and tests only."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def has_accelerator() -> bool:
    """Whether a GPU-like device is present (else accelerate must be told cpu=True to run several CPU processes)."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 pays off on CUDA with bf16 support, and on CPUs with native bf16 (AVX512-BF16/AMX); not on AVX2 CPUs,
    where it measured 6x slower than fp32 for SmolLM2-135M."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(device: torch.device, dtype: str) -> str:
    """'auto' -> 'bf16' where it is fast on this device, else 'fp32'."""
    if dtype not in ("auto", "bf16", "fp32"):
        raise ValueError(f"dtype must be auto, bf16 or fp32, got {dtype!r}")
    if dtype == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return dtype


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast for 'bf16' (or 'auto' where bf16 is fast); plain fp32 otherwise. Weights stay fp32."""
    if resolve_precision(device, dtype) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class TokenLogProbs(nn.Module):
    """Wraps a causal LM so that forward(ids, mask) returns (B, T-1) log p(ids[:, 1:]) (or from `start` on).

    It is one nn.Module so that accelerate/DDP/FSDP wrap it and see the whole computation in forward().
    """

    def __init__(self, lm: nn.Module, chunk: int = 256):
        super().__init__()
        self.lm = lm
        self.chunk = chunk
        cfg = getattr(lm, "config", None)
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self.scale = getattr(cfg, "logit_scale", None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T-1-start) log-probs of input_ids[:, start+1:]; positions before `start` (the prompt) skip the
        LM head, which is a fifth of a small model's FLOPs per token."""
        decoder = self.lm.get_decoder()
        # Right padding under a causal mask: a real token only attends to earlier, real tokens, so the padding
        # mask changes nothing we read, and without it attention takes the fast causal kernel.
        if attention_mask is not None and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all()):
            attention_mask = None
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return chunked_token_logprobs(hidden[:, start:-1], self.lm.get_output_embeddings(), input_ids[:, start + 1:],
                                      self.chunk, self.softcap, self.scale)  # (B, T-1-start)
