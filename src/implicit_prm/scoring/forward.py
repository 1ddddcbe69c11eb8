"""The one no-grad forward loop of scoring: length-bucketed batches, sharded over processes, a progress bar; it runs
a TokenLogProbs (per-token log-probs) or a step-value head (values at read positions)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.precision import autocast_context
from ..models.heads import StepLogits
from ..steps.batching import (
    batch_plan,
    first_response_position,
    length_batches,
    pad_batch,
    response_mask,
    response_slices,
)
from ..steps.encoding import Encoded
from ..steps.tags import batch_inputs


@torch.no_grad()
def step_probabilities(model: StepLogits, encs: Sequence[Encoded], boundary0: bool, pad_id: int, device,
                       precision: str, batch_tokens: int, show: bool = False, shard: tuple[int, int] = (0, 1),
                       on_batch: Callable[[list[int], list[np.ndarray]], None] | None = None,
                       sigmoid: bool = True) -> None:
    """sigmoid(z) (or z itself with sigmoid=False) at each response's read positions, by length batches;
    `on_batch(indices, arrays)` per batch. With shard=(rank, world) this process runs every world-th batch of the
    one plan. `model` is any module with StepLogits' interface (scorers/heads.py)."""
    from tqdm.auto import tqdm


    model.eval()
    dev = torch.device(device)
    plan = length_batches([len(e) for e in encs], batch_tokens)[shard[0]::shard[1]]
    bar = tqdm(total=sum(len(b) for b in plan), desc="step scores", unit="resp", disable=not show)
    for idx in plan:
        batch = [encs[i] for i in idx]
        ids, mask, pos, counts = batch_inputs(batch, boundary0, pad_id, dev)
        with autocast_context(dev, precision):
            z = model(ids, mask, pos)  # (N,)
        probs = (torch.sigmoid(z) if sigmoid else z).double().cpu().numpy()
        arrays = np.split(probs, np.cumsum(counts)[:-1])
        if on_batch is not None:
            on_batch(idx, arrays)
        bar.update(len(idx))
    bar.close()


@torch.no_grad()
def response_logprobs(model: torch.nn.Module, encs: Sequence[Encoded], pad_id: int, device, precision: str = "auto",
                      batch_tokens: int = 8192, desc: str = "log-probs",
                      on_batch: Callable[[list[int], list[np.ndarray]], None] | None = None,
                      show: bool = True, shard: tuple[int, int] = (0, 1)) -> list[np.ndarray | None]:
    """Per-response-token log-probs (float32 arrays) of each encoded response under `model` (a TokenLogProbs).

    Batches by length so little compute goes to padding, and runs a prompt shared by several responses once (see
    batch_plan); `on_batch(indices, arrays)` sees each finished batch (used to stream results to disk so a killed
    run resumes).

    shard=(rank, world): this process computes every world-th batch of the one global batch plan (None for the
    rest). Each batch then holds the same sequences, with the same padding, whatever the number of processes, so
    sharded results are bit-identical to a single process's on the same hardware.
    """
    model.eval()
    out: list[np.ndarray | None] = [None] * len(encs)
    rank, world = shard
    dev = torch.device(device)
    overhead = 16 if dev.type == "cpu" else 512  # a forward call's fixed cost, in tokens
    share = bool(getattr(model, "can_share_prefix", False))
    context = getattr(model, "attention_context", float("inf"))
    plan = batch_plan(encs, batch_tokens, overhead, share, context)[rank::world]
    bar = tqdm(total=sum(len(encs[i].response_ids) for _, b in plan for i in b), desc=desc, unit="tok",
               disable=not show)
    for shared, idx in plan:
        batch = [encs[i] for i in idx]
        with autocast_context(dev, precision):
            if shared:
                resp, mask = pad_batch([e.response_ids for e in batch], pad_id, device)
                prompt = torch.tensor([batch[0].prompt_ids], dtype=torch.long, device=device)
                lp = model.continuations(prompt, resp, mask.bool())  # (B, L)
                rows = [row[:len(e.response_ids)] for row, e in zip(lp, batch)]
            else:
                ids, mask = pad_batch([e.ids for e in batch], pad_id, device)
                start = first_response_position(batch)
                lp = model(ids, mask, start, response_mask(batch, start, ids.shape[1], ids.device))  # (B, T-1-start)
                rows = response_slices(lp, batch, start)
        arrays = [r.float().cpu().numpy() for r in rows]
        for i, a in zip(idx, arrays):
            out[i] = a
        if on_batch is not None:
            on_batch(idx, arrays)
        bar.update(sum(len(e.response_ids) for e in batch))
    bar.close()
    return out
