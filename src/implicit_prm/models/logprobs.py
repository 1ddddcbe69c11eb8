"""Per-token log-probs of a causal LM, chunked over positions so the full (B, T, V) log-softmax never exists."""
from __future__ import annotations

import inspect
import threading
import weakref

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def chunked_token_logprobs(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor, chunk: int = 256,
                           softcap: float | None = None, scale: float | None = None) -> torch.Tensor:
    """log p(targets) from final hidden states, `chunk` tokens at a time across the whole batch.

    hidden: (..., H) states that predict targets (...), e.g. (B, T, H) and (B, T), or (N, H) and (N,) for selected
    positions. Returns float32 log-probs shaped like targets. The positions are flattened and cut into chunks of
    `chunk` tokens, so the float32 logits alive at once are (chunk, V) whatever the batch size: 48 MiB for a 49k
    vocabulary at the default 256. Each chunk takes logit[target] - logsumexp(logits) and drops the logits.

    A linear head (every causal LM's lm_head) goes through HeadLogProbs, whose backward recomputes a chunk's
    logits once and writes the gradient of the log-softmax by hand; any other head module is checkpointed per
    chunk, which recomputes the whole forward of the chunk and then differentiates it.
    """
    n = targets.numel()
    flat_h, flat_t = hidden.reshape(n, hidden.shape[-1]), targets.reshape(n)  # (N, H), (N,)
    if n == 0:
        return flat_h.new_zeros(targets.shape, dtype=torch.float32) + flat_h.sum() * 0
    if type(head) is nn.Linear:
        dtype = _compute_dtype(flat_h, head.weight)
        out = HeadLogProbs.apply(flat_h, head.weight, head.bias, flat_t, chunk, softcap, scale, dtype)
        return out.reshape(targets.shape)

    def one(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = _capped(head(h).float(), softcap, scale)[0]  # (c, V)
        return logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    outs = []
    for s in range(0, n, chunk):
        h, tg = flat_h[s:s + chunk], flat_t[s:s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            outs.append(checkpoint(one, h, tg, use_reentrant=False))
        else:
            outs.append(one(h, tg))
    return torch.cat(outs).reshape(targets.shape)


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the head's matmul runs in: autocast's where it is on (as head(h) would), else the promoted one."""
    kind = hidden.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _capped(logits: torch.Tensor, softcap: float | None, scale: float | None):
    """(final logits, tanh of the softcap or None) from the head's float32 output (c, V)."""
    if scale is not None:
        logits = logits * scale
    if softcap is None:
        return logits, None
    t = torch.tanh(logits / softcap)
    return t * softcap, t


class HeadLogProbs(torch.autograd.Function):
    """log p(targets) (N,) of a linear head over states (N, H), chunked; same maths as log_softmax(h W^T + b).

    Forward keeps, per position, only the logsumexp; backward recomputes each chunk's logits z once and uses
    d log p_t / dz = onehot(t) - softmax(z), so a training step pays the head's matmul three times (forward,
    recompute, gradient of h) and one exp over (chunk, V), against a checkpoint's forward twice, a second
    logsumexp and autograd's log-softmax backward. The weight is cast to the compute dtype once per step (the
    cast is kept for backward; a frozen CPU weight's is reused across calls, see cast_weight), and the (chunk, V)
    work runs in place in buffers kept across passes on a CPU (see docs/performance.md). The weight's (and bias's)
    gradient is accumulated in float32 when it is wanted (a full fine-tune of a tied embedding; a bias's from
    the rounded logit gradient); LoRA leaves the head frozen and skips it.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, softcap, scale, dtype):
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = cast_weight(weight, dtype), None if bias is None else bias.to(dtype)
            out = torch.empty(targets.shape, dtype=torch.float32, device=hidden.device)  # (N,)
            lse = torch.empty_like(out)
            bufs = _buffers(chunk, targets.numel(), w, dtype)
            for s in range(0, targets.numel(), chunk):
                zc = bufs.logits(hidden[s:s + chunk].to(dtype), w, b)  # (c, V) in the compute dtype
                t = targets[s:s + chunk, None]  # (c, 1)
                if softcap is None and scale is None:
                    z_t, lse[s:s + chunk] = zc.gather(1, t)[:, 0].float(), bufs.logsumexp(zc)
                else:
                    z = _capped(zc.float(), softcap, scale)[0]
                    z_t, lse[s:s + chunk] = z.gather(1, t)[:, 0], torch.logsumexp(z, dim=-1)
                out[s:s + chunk] = z_t - lse[s:s + chunk]
        ctx.save_for_backward(hidden, weight, bias, targets, lse, w)
        ctx.opts = (chunk, softcap, scale, dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse, w = ctx.saved_tensors
        chunk, softcap, scale, dtype = ctx.opts
        want_h, want_w, want_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if want_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            b = None if bias is None else bias.to(dtype)
            bufs = _buffers(chunk, targets.numel(), w, dtype)
            for s in range(0, targets.numel(), chunk):
                h, t, g = hidden[s:s + chunk].to(dtype), targets[s:s + chunk, None], grad_out[s:s + chunk, None]
                zc = bufs.logits(h, w, b)  # (c, V)
                gz = bufs.grad_logits(zc, t, g.float(), lse[s:s + chunk, None], softcap, scale)  # (c, V)
                if want_h:
                    grad_h[s:s + chunk] = gz @ w
                if want_w:
                    grad_w += (gz.T @ h).float()
                if want_b:
                    grad_b += gz.float().sum(0)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None


#: Per thread, the last _Buffers a CPU pass of HeadLogProbs used, kept for the next.
_KEPT = threading.local()


def _buffers(chunk: int, n: int, w: torch.Tensor, dtype: torch.dtype) -> _Buffers:
    """The work buffers of one pass over n positions. On a CPU they are kept across passes (per thread, the last
    shape; about 100 MiB for a 49k vocabulary at the default chunk): each fresh set costs its page faults again,
    about 25 ms for 48 MiB. An accelerator's caching allocator reuses memory by itself."""
    if w.device.type != "cpu":
        return _Buffers(min(chunk, n), w.shape[0], dtype, w.device)
    kept = getattr(_KEPT, "buffers", None)
    if kept is None or kept.key != (chunk, w.shape[0], dtype):
        kept = _KEPT.buffers = _Buffers(chunk, w.shape[0], dtype, w.device)
    return kept


class _Buffers:
    """The (chunk, V) tensors of a pass of HeadLogProbs, allocated once and reused by every chunk: fresh
    allocations of this size (48 MiB in float32 for a 49k vocabulary) come from the OS page by page on a CPU."""

    def __init__(self, rows: int, vocab: int, dtype: torch.dtype, dev: torch.device):
        self.key, shape = (rows, vocab, dtype), (rows, vocab)
        self.z = torch.empty(shape, dtype=dtype, device=dev)  # the logits, in the compute dtype
        self.f = torch.empty(shape, dtype=torch.float32, device=dev)  # float32 work
        self.g = self.f if dtype == torch.float32 else torch.empty(shape, dtype=dtype, device=dev)

    def logits(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        out = self.z[:h.shape[0]]  # (c, V)
        return torch.mm(h, w.T, out=out) if b is None else torch.addmm(b, h, w.T, out=out)

    def logsumexp(self, zc: torch.Tensor) -> torch.Tensor:
        """(c,) float32 logsumexp of the logits: torch.logsumexp(zc.float())'s steps, in place in the buffer."""
        e = self.f[:zc.shape[0]].copy_(zc)  # (c, V) float32
        m = e.amax(1, keepdim=True)  # (c, 1)
        m.masked_fill_(m.abs() == float("inf"), 0)
        return e.sub_(m).exp_().sum(1).log_().add_(m[:, 0])

    def grad_logits(self, zc, t, g, lse, softcap, scale) -> torch.Tensor:
        """(c, V) gradient of sum_i g_i log p(t_i) in the logits, in the compute dtype: g * (onehot(t) - softmax);
        the float32 values are those of the plain computation, rounded once."""
        if softcap is None and scale is None:
            p = self.f[:zc.shape[0]].copy_(zc).sub_(lse).exp_()  # (c, V) softmax, float32
            at_t = p.gather(1, t).mul_(-g).add_(g)  # (c, 1): g - g * p_t
            gz = self.g[:zc.shape[0]].copy_(p.mul_(-g))  # the compute dtype
            return gz.scatter_(1, t, at_t.to(gz.dtype))
        z, tanh = _capped(zc.float(), softcap, scale)
        gz = torch.exp_(z.sub_(lse)).mul_(-g)  # -g * softmax(z)
        gz.scatter_add_(1, t, g)  # + g at the target
        if tanh is not None:
            gz.mul_(1 - tanh * tanh)
        if scale is not None:
            gz.mul_(scale)
        return gz.to(zc.dtype)


#: id(weight) -> (weakref to it, its version, data pointer, dtype, the cast): see cast_weight.
_CASTS: dict = {}


def cast_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight` in `dtype`. A frozen weight on a CPU (LoRA's LM head, a reference model's) keeps its cast across
    calls until the tensor changes (its version counter or storage) or dies: each cast of a 49k x 576 head costs
    as much as a fifth of the head's forward matmul there. A GPU casts fast and has the memory to spare least."""
    if weight.dtype == dtype:
        return weight
    if weight.requires_grad or weight.device.type != "cpu":
        return weight.to(dtype)
    key = id(weight)
    hit = _CASTS.get(key)
    if hit is not None and hit[0]() is weight and hit[1:4] == (weight._version, weight.data_ptr(), dtype):
        return hit[4]
    cast = weight.to(dtype)
    _CASTS[key] = (weakref.ref(weight, lambda _, k=key: _CASTS.pop(k, None)), weight._version, weight.data_ptr(),
                   dtype, cast)
    return cast


def full_token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The naive way: a full-vocabulary log_softmax over (B, T, V). Kept for benchmarks and tests only."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
                positions: torch.Tensor | None = None, pack=None) -> torch.Tensor:
        """(B, T-1-start) log-probs of input_ids[:, start+1:].

        Positions before `start` (the prompt) skip the LM head, which is a fifth of a small model's forward FLOPs
        per token and, with its recomputation, a quarter of a training step's. `positions`, a (B, T-1-start) bool
        mask, narrows the head further to the positions that are read (each row's response; not its own prompt
        or padding); elsewhere the result is 0.

        With `pack` (a steps.batching.SharedPack; input_ids and attention_mask unused): its (N,) token log-probs,
        each prompt computed once for all its responses (see can_pack).
        """
        if pack is not None:
            return self._packed(pack)
        if attention_mask is not None and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all()):
            # Right padding under a causal mask: a real token only attends to earlier, real tokens, so the
            # padding mask changes nothing we read, and without it attention takes the fast causal kernel.
            attention_mask = None
        decoder = self.lm.get_decoder()
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        hidden, targets = hidden[:, start:-1], input_ids[:, start + 1:]  # (B, T', H), (B, T')
        head = self.lm.get_output_embeddings()
        if positions is None:
            return chunked_token_logprobs(hidden, head, targets, self.chunk, self.softcap, self.scale)  # (B, T')
        if not bool(positions.any()):  # nothing to read: zeros, still attached to the graph (DDP, backward)
            return torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device) + hidden.sum() * 0
        picked = chunked_token_logprobs(hidden[positions], head, targets[positions], self.chunk, self.softcap,
                                        self.scale)  # (N,)
        return torch.zeros(targets.shape, dtype=picked.dtype, device=picked.device).masked_scatter(positions, picked)

    @property
    def can_pack(self) -> bool:
        """Whether forward(pack=...) runs this model: its attention takes a custom 4D mask (eager, SDPA) and every
        layer is attention (a recurrent layer would carry one response's state into the next)."""
        kind = getattr(_text_config(self.lm), "_attn_implementation", None)
        return kind in ("eager", "sdpa") and _all_attention(self.lm)

    def _packed(self, pack) -> torch.Tensor:
        kind = _text_config(self.lm)._attn_implementation
        mask = pack.allowed[:, None]  # (G, 1, T, T): SDPA takes it as bool; eager adds it to the scores
        if kind == "eager":
            mask = torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, torch.finfo(torch.float32).min)
        decoder = self.lm.get_decoder()
        hidden = decoder(input_ids=pack.ids, attention_mask=mask, position_ids=pack.position_ids).last_hidden_state
        flat = hidden.reshape(-1, hidden.shape[-1])[pack.pred]  # (N, H)
        return chunked_token_logprobs(flat, self.lm.get_output_embeddings(), pack.targets, self.chunk, self.softcap,
                                      self.scale)

    @property
    def attention_context(self) -> float:
        """The context length at which attention's FLOPs per token equal the decoder weights': the matmul
        parameters of one layer over the hidden size (about 6.1k for SmolLM2-135M). From the config, so a policy
        and its reference of the same architecture always agree; inf where the config does not say."""
        cfg = _text_config(self.lm)
        try:
            h, heads, inter = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size
            head_dim = getattr(cfg, "head_dim", None) or h // heads
            kv = getattr(cfg, "num_key_value_heads", None) or heads
        except (AttributeError, TypeError):
            return float("inf")
        per_layer = 2 * h * heads * head_dim + 2 * h * kv * head_dim + 3 * h * inter  # q, o; k, v; MLP
        return per_layer / h

    @property
    def can_share_prefix(self) -> bool:
        """Whether continuations() can run this model: its decoder takes a key/value cache (transformers 5's
        `cache=`) and every layer is attention, whose cache repeats across a batch. Linear-attention and conv
        layers (hybrid models) keep recurrent states that a repeated cache would not carry."""
        if not _all_attention(self.lm):
            return False
        try:
            return "cache" in inspect.signature(self.lm.get_decoder().forward).parameters
        except (AttributeError, TypeError, ValueError):
            return False

    @torch.no_grad()
    def continuations(self, prompt_ids: torch.Tensor, response_ids: torch.Tensor,
                      positions: torch.Tensor) -> torch.Tensor:
        """(k, L) log-probs of k right-padded responses (k, L) to one prompt (1, P), the prompt computed once.

        The prompt's keys and values are computed once and repeated for the k responses, which then run with them
        as past keys and values: k * P prompt tokens of compute become P. Best-of-N scores N responses per prompt,
        so this saves (N - 1) / N of the prompt's share. `positions` (k, L) marks the real response tokens; the
        result is 0 elsewhere. No gradient: for scoring and the reference pass.
        """
        decoder = self.lm.get_decoder()
        k = response_ids.shape[0]
        first = decoder(input_ids=prompt_ids, use_cache=True)
        cache = first.cache
        if cache is None:
            raise RuntimeError("the decoder returned no key/value cache (gradient checkpointing in train mode turns "
                               "it off): continuations() is for scoring, with the model in eval mode")
        cache.batch_repeat_interleave(k)
        hidden = decoder(input_ids=response_ids, cache=cache, use_cache=True).last_hidden_state  # (k, L, H)
        # The prompt's last state predicts the first response token; response position j predicts token j + 1.
        last = first.last_hidden_state[:, -1:].expand(k, 1, hidden.shape[-1])
        hidden = torch.cat([last, hidden[:, :-1]], dim=1)  # (k, L, H)
        picked = chunked_token_logprobs(hidden[positions], self.lm.get_output_embeddings(), response_ids[positions],
                                        self.chunk, self.softcap, self.scale)  # (N,)
        out = torch.zeros(response_ids.shape, dtype=picked.dtype, device=picked.device)
        return out.masked_scatter(positions, picked)


def _all_attention(lm) -> bool:
    """Whether every layer is attention (not the linear-attention or conv layers of hybrid models)."""
    types = getattr(_text_config(lm), "layer_types", None) or []
    return all(t in ("full_attention", "sliding_attention", "chunked_attention") for t in types)


def _text_config(lm):
    """The language model's config (multimodal configs nest it as text_config)."""
    cfg = getattr(lm, "config", None)
    return getattr(cfg, "text_config", None) or cfg
