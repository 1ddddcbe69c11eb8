"""Length-bucketed batch plans: the length DP, prompts shared by best-of-N responses, padding and response masks (the
loop that runs them is scoring/forward.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .encoding import Encoded


def length_batches(lengths: Sequence[int], batch_tokens: int, max_batch: int = 64,
                   overhead_tokens: int = 0) -> list[list[int]]:
    """Group indices into batches of similar length that cost the least padded compute.

    Sorted longest first (an out-of-memory error shows at once), the lengths are cut into consecutive batches by
    dynamic programming, minimising the sum over batches of (size x longest + overhead_tokens) subject to
    size x longest <= batch_tokens and size <= max_batch. `overhead_tokens` prices one more forward call in tokens:
    about 0 on a CPU, where even one sequence fills the matmuls, and hundreds on a GPU, where small batches idle it.
    A sequence longer than batch_tokens gets a batch of its own. A greedy fill (add while size x longest fits)
    would put short sequences behind a long one (docs/performance.md compares the two).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n = len(order)
    srt = np.array([lengths[i] for i in order], dtype=np.int64)
    best = np.zeros(n + 1, dtype=np.int64)  # best[i]: least cost of batching sorted positions i..n-1
    take = np.ones(n, dtype=np.int64)  # size of the batch that starts at sorted position i
    for i in range(n - 1, -1, -1):
        longest = int(srt[i])
        k_max = max(1, min(max_batch, n - i, batch_tokens // max(longest, 1)))
        sizes = np.arange(1, k_max + 1)
        cost = sizes * longest + overhead_tokens + best[i + 1:i + k_max + 1]
        k = k_max - int(np.argmin(cost[::-1]))  # on ties, the larger batch (fewer calls)
        best[i], take[i] = cost[k - 1], k
    batches, i = [], 0
    while i < n:
        batches.append(order[i:i + int(take[i])])
        i += int(take[i])
    return batches


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into (B, T) ids and attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def first_response_position(encs: Sequence[Encoded]) -> int:
    """The earliest position in a batch that predicts a response token (earlier ones need no LM head)."""
    return min(len(e.prompt_ids) for e in encs) - 1


def response_mask(encs: Sequence[Encoded], start: int, width: int, device=None) -> torch.Tensor:
    """(B, width - 1 - start) bool: the positions (from `start`) whose next token is a response token."""
    mask = torch.zeros((len(encs), width - 1 - start), dtype=torch.bool)
    for i, e in enumerate(encs):
        mask[i, len(e.prompt_ids) - 1 - start:len(e) - 1 - start] = True
    return mask.to(device) if device is not None else mask


def response_slices(token_lp: torch.Tensor, encs: Sequence[Encoded], start: int = 0) -> list[torch.Tensor]:
    """Cut each row of (B, T-1-start) next-token log-probs (from position `start`) down to its response tokens."""
    out = []
    for row, e in zip(token_lp, encs):
        first = len(e.prompt_ids) - 1 - start  # position predicting the first response token
        out.append(row[first:first + len(e.response_ids)])
    return out


def batch_plan(encs: Sequence[Encoded], batch_tokens: int, overhead_tokens: int = 0, share_prefix: bool = True,
               attention_context: float = float("inf")) -> list[tuple[bool, list[int]]]:
    """The global batch plan: (shared, indices) per batch, the largest batches first.

    With share_prefix, responses to the same prompt (two or more of them: best-of-N) are batched among themselves
    and run as continuations of one prompt pass (shared=True); a batch of them costs the prompt once plus its
    responses, which the length DP sees as the per-call overhead. Every other response goes into ordinary
    length batches. The plan depends only on the inputs, so every process of a sharded run derives the same one.

    Continuations cannot use the causal attention kernel, which skips the upper triangle: with past keys the mask
    is no longer square and attention computes all of it. Per response that costs about L^2 / attention_context
    token-equivalents, where attention_context is the context at which attention's FLOPs per token equal the
    decoder weights' (TokenLogProbs.attention_context: about 6.1k for SmolLM2-135M). A prompt is shared only where
    the prompt tokens saved per response, P (1 - 1/k) for k responses in a batch, exceed that (docs/performance.md
    has the measurements behind this rule).
    """
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(encs):
        groups.setdefault(tuple(e.prompt_ids), []).append(i)
    plan: list[tuple[bool, list[int]]] = []
    rest: list[int] = []
    for prompt, members in groups.items():
        idx = [i for i in members if encs[i].response_ids]
        if not (share_prefix and prompt and len(idx) >= 2):
            rest += members
            continue
        p, resp = len(prompt), [len(encs[i].response_ids) for i in idx]
        k = min(len(idx), max(1, batch_tokens // (p + max(resp))))  # responses per batch
        if p * (1 - 1 / k) <= sum(n * n for n in resp) / len(resp) / attention_context:
            rest += members
            continue
        rest += [i for i in members if not encs[i].response_ids]
        for b in length_batches([p + len(encs[i].response_ids) for i in idx], batch_tokens,
                                overhead_tokens=overhead_tokens + p):
            plan.append((True, [idx[j] for j in b]))
    rest.sort()
    plan += [(False, [rest[j] for j in b])
             for b in length_batches([len(encs[i]) for i in rest], batch_tokens, overhead_tokens=overhead_tokens)]
    width = lambda b: len(b[1]) * max(len(encs[i]) for i in b[1])  # noqa: E731
    return sorted(plan, key=lambda b: (-width(b), b[1][0]))




class SharedPack:
    """A training micro-batch with each prompt computed once: one row per distinct prompt, holding the prompt and
    then each of its responses, every response seeing the prompt and its own earlier tokens only.

    ids, position_ids (G, T): row g is prompt_g + response_1 + response_2 + ..., right-padded; each response's
    positions restart at len(prompt_g), as in its own unshared sequence. allowed (G, T, T) bool: query t may attend
    to key s (the prompt causally; a response to the whole prompt and causally to itself; padding to itself).
    pred (N,): flat index into (G * T) of the state that predicts each response token (the prompt's last state for
    a response's first token); targets (N,): the token; owner (N,): the sequence (index into the input) it belongs
    to. Under a causal LM this is the same computation as the unshared batch, with G * P prompt tokens instead of
    B * P; only float summation order may differ.
    """

    def __init__(self, seqs: Sequence[Encoded], pad_id: int, device):
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(seqs):
            groups.setdefault(tuple(e.prompt_ids), []).append(i)
        width = max(len(p) + sum(len(seqs[i].response_ids) for i in m) for p, m in groups.items())
        g = len(groups)
        ids = torch.full((g, width), pad_id, dtype=torch.long)
        pos = torch.zeros((g, width), dtype=torch.long)
        allowed = torch.eye(width, dtype=torch.bool).repeat(g, 1, 1)  # padding attends to itself only
        pred, targets, owner = [], [], []
        for row, (prompt, members) in enumerate(groups.items()):
            p = len(prompt)
            ids[row, :p] = torch.tensor(prompt, dtype=torch.long)
            pos[row, :p] = torch.arange(p)
            allowed[row, :p, :p] = torch.ones(p, p, dtype=torch.bool).tril()
            at = p
            for i in members:
                r = seqs[i].response_ids
                n = len(r)
                if not n:
                    continue
                ids[row, at:at + n] = torch.tensor(r, dtype=torch.long)
                pos[row, at:at + n] = torch.arange(p, p + n)
                allowed[row, at:at + n, :p] = True
                allowed[row, at:at + n, at:at + n] = torch.ones(n, n, dtype=torch.bool).tril()
                pred += [row * width + p - 1] + [row * width + at + j for j in range(n - 1)]  # empty r: none
                targets += r
                owner += [i] * n
                at += n
        self.n_seqs = len(seqs)
        self.ids, self.position_ids, self.allowed = ids.to(device), pos.to(device), allowed.to(device)
        self.pred = torch.tensor(pred, dtype=torch.long, device=device)
        self.targets = torch.tensor(targets, dtype=torch.long, device=device)
        self.owner = torch.tensor(owner, dtype=torch.long, device=device)

    @staticmethod
    def pays(seqs: Sequence[Encoded]) -> bool:
        """Whether any prompt of the batch has two or more responses (else packing saves nothing)."""
        prompts = [tuple(e.prompt_ids) for e in seqs if e.response_ids]
        return len(set(prompts)) < len(prompts) and all(e.prompt_ids for e in seqs)

    def sums(self, token_lp: torch.Tensor) -> torch.Tensor:
        """(B,) each sequence's summed log-probs from the (N,) per-token ones."""
        return torch.zeros(self.n_seqs, dtype=token_lp.dtype, device=token_lp.device).index_add(0, self.owner,
                                                                                              token_lp)
