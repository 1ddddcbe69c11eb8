"""Length-bucketed batching and the one loop that runs a model over many encoded responses for their log-probs."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .encoding import Encoded
from .logprobs import autocast_context


def length_batches(lengths: Sequence[int], max_tokens: int, max_batch: int = 64) -> list[list[int]]:
    """Group indices into batches of similar length: sort by length, then fill while batch*longest <= max_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # longest first: OOM shows at once
    batches, cur, longest = [], [], 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if cur and (new_longest * (len(cur) + 1) > max_tokens or len(cur) >= max_batch):
            batches.append(cur)
            cur, new_longest = [], lengths[i]
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(cur)
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


def response_slices(token_lp: torch.Tensor, encs: Sequence[Encoded], start: int = 0) -> list[torch.Tensor]:
    """Cut each row of (B, T-1-start) next-token log-probs (from position `start`) down to its response tokens."""
    out = []
    for row, e in zip(token_lp, encs):
        first = len(e.prompt_ids) - 1 - start  # position predicting the first response token
        out.append(row[first:first + len(e.response_ids)])
    return out


@torch.no_grad()
def response_logprobs(model: torch.nn.Module, encs: Sequence[Encoded], pad_id: int, device, dtype: str = "auto",
                      max_tokens: int = 8192, desc: str = "log-probs",
                      on_batch: Callable[[list[int], list[np.ndarray]], None] | None = None,
                      show: bool = True, shard: tuple[int, int] = (0, 1)) -> list[np.ndarray | None]:
    """Per-response-token log-probs (float32 arrays) of each encoded response under `model` (a TokenLogProbs).

    Batches by length so little compute goes to padding; `on_batch(indices, arrays)` sees each finished batch
    (used to stream results to disk so a killed run resumes).

    shard=(rank, world): this process computes every world-th batch of the one global batch plan (None for the
    rest). Each batch then holds the same sequences, with the same padding, whatever the number of processes, so
    sharded results are bit-identical to a single process's on the same hardware.
    """
    model.eval()
    out: list[np.ndarray | None] = [None] * len(encs)
    rank, world = shard
    batches = length_batches([len(e) for e in encs], max_tokens)[rank::world]
    bar = tqdm(total=sum(len(encs[i].response_ids) for b in batches for i in b), desc=desc, unit="tok",
               disable=not show)
    for idx in batches:
        batch = [encs[i] for i in idx]
        ids, mask = pad_batch([e.ids for e in batch], pad_id, device)
        start = first_response_position(batch)
        with autocast_context(torch.device(device), dtype):
            lp = model(ids, mask, start)  # (B, T-1-start)
        arrays = [s.float().cpu().numpy() for s in response_slices(lp, batch, start)]
        for i, a in zip(idx, arrays):
            out[i] = a
        if on_batch is not None:
            on_batch(idx, arrays)
        bar.update(sum(len(e.response_ids) for e in batch))
    bar.close()
    return out
