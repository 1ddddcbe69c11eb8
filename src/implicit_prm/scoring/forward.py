"""The one no-grad forward loop of scoring (`run_plan`): a batch plan, sharded over processes, run under autocast
with a progress bar, each finished batch handed on. Two things run through it: a TokenLogProbs for per-token
log-probs (`response_logprobs`: implicit PRMs and the reference pass) and a step-value head for the values at
each response's read positions (`step_values`: the readout scorers)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..core.precision import autocast_context
from ..core.progress import progress
from ..models.heads import StepLogits
from ..models.logprobs import TokenLogProbs
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

Plan = list[tuple[bool, list[int]]]  # (whether the batch's responses share one prompt pass, indices into encs)
OnBatch = Callable[[list[int], list[np.ndarray]], None]


@torch.no_grad()
def run_plan(model: torch.nn.Module, encs: Sequence[Encoded], plan: Plan,
             run_batch: Callable[[bool, list[Encoded]], list[np.ndarray]], device, precision: str,
             shard: tuple[int, int] = (0, 1), on_batch: OnBatch | None = None, show: bool = True,
             desc: str = "forward", unit: str = "tok", size: Callable[[Encoded], int] = lambda e: 1
             ) -> list[np.ndarray | None]:
    """Run every shard[1]-th batch of `plan` from shard[0] (`run_batch(shared, batch)` -> one array per
    response); an array per response this process ran (None for the others), `on_batch(indices, arrays)` per
    batch as it finishes. The bar counts `size(enc)` per response, in `unit`.

    Each process runs the same batches, with the same padding, whatever the number of processes, so sharded
    results are bit-identical to a single process's on the same hardware."""
    model.eval()
    dev = torch.device(device)
    mine = plan[shard[0]::shard[1]]
    out: list[np.ndarray | None] = [None] * len(encs)
    bar = progress(sum(size(encs[i]) for _, idx in mine for i in idx), desc, unit, show)
    for shared, idx in mine:
        batch = [encs[i] for i in idx]
        with autocast_context(dev, precision):
            arrays = run_batch(shared, batch)
        for i, a in zip(idx, arrays):
            out[i] = a
        if on_batch is not None:
            on_batch(idx, arrays)
        bar.update(sum(size(e) for e in batch))
    bar.close()
    return out


def response_logprobs(model: TokenLogProbs, encs: Sequence[Encoded], pad_id: int, device, precision: str = "auto",
                      batch_tokens: int = 8192, desc: str = "log-probs", on_batch: OnBatch | None = None,
                      show: bool = True, shard: tuple[int, int] = (0, 1)) -> list[np.ndarray | None]:
    """Per-response-token log-probs (float32 arrays) of each encoded response under `model`.

    Batches by length so little compute goes to padding, and runs a prompt shared by several responses once (see
    steps.batching.batch_plan); `on_batch(indices, arrays)` sees each finished batch (used to stream results to
    disk so a killed run resumes). shard=(rank, world): see run_plan.
    """
    overhead = 16 if torch.device(device).type == "cpu" else 512  # a forward call's fixed cost, in tokens
    plan = batch_plan(encs, batch_tokens, overhead, model.can_share_prefix, model.attention_context)

    def run_batch(shared: bool, batch: list[Encoded]) -> list[np.ndarray]:
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
        return [r.float().cpu().numpy() for r in rows]

    return run_plan(model, encs, plan, run_batch, device, precision, shard, on_batch, show, desc, "tok",
                    lambda e: len(e.response_ids))


def step_values(model: StepLogits, encs: Sequence[Encoded], boundary0: bool, pad_id: int, device, precision: str,
                batch_tokens: int, show: bool = False, shard: tuple[int, int] = (0, 1),
                on_batch: OnBatch | None = None, sigmoid: bool = True) -> list[np.ndarray | None]:
    """sigmoid(z) (or z itself with sigmoid=False) at each response's read positions (float64 arrays), by length
    batches. `model` is any head with StepLogits' interface (models/heads.py); shard: see run_plan."""
    plan = [(False, b) for b in length_batches([len(e) for e in encs], batch_tokens)]

    def run_batch(shared: bool, batch: list[Encoded]) -> list[np.ndarray]:
        ids, mask, pos, counts = batch_inputs(batch, boundary0, pad_id, torch.device(device))
        z = model(ids, mask, pos)  # (N,)
        values = (torch.sigmoid(z) if sigmoid else z).double().cpu().numpy()
        return np.split(values, np.cumsum(counts)[:-1])

    return run_plan(model, encs, plan, run_batch, device, precision, shard, on_batch, show, "step scores", "resp")
