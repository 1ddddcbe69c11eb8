"""Evaluation during training (`train --eval-data FILE --eval-every N`): the objective's own loss and accuracy on
held-out data, and for the implicit objectives the AUROC of each response's lowest step reward (`min`, the
paper's score) at telling right from wrong."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import losses
from ..rewards import auroc
from ..scoring.forward import response_logprobs
from ..scoring.implicit import rewards_record
from ..scoring.reference import RefTable
from .data import EncodedData
from .plan import mismatched_pairs


@dataclass
class EvalSet:
    data: EncodedData
    batches: list[list[int]]  # micro-batches of example positions, in order


def eval_set(data: EncodedData, batch_size: int) -> EvalSet:
    n = len(data.examples)
    return EvalSet(data, [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)])


def eval_sequences(cfg, ev: EvalSet) -> list:
    """Every sequence evaluation reads whose reference log-probs it needs (KTO: the mismatched pairs too)."""
    seqs = [e for e in ev.data.encs if e is not None]
    if losses.LOSSES[cfg.objective].kl_pairs:
        for b in ev.batches:
            seqs += mismatched_pairs([ev.data.examples[i] for i in b], ev.data.encs, cfg.max_length)
    return seqs


@torch.no_grad()
def evaluate(cfg, model, lm_model, ev: EvalSet, ref: RefTable | None, pad_id: int, device, precision: str,
             batch_loss) -> dict[str, float | None]:
    """eval_loss (mean over micro-batches), eval_acc (share of rewards on the right side of 0, as the training
    log's acc) and, for an implicit objective, eval_auroc_min. `batch_loss` is the loop's micro-batch loss;
    `lm_model` the unwrapped TokenLogProbs (None for a step objective). Every process evaluates the whole set
    (the same numbers), so a wrapped model sees the same calls everywhere."""
    was_training = model.training
    model.eval()
    data, loss_sum, right, n = ev.data, 0.0, 0, 0
    for b in ev.batches:
        out = batch_loss(cfg, model, [data.examples[i] for i in b], data.encs, ref, pad_id, device, precision,
                         data.targets)
        loss_sum += float(out.loss)
        r, lab = out.rewards.float(), out.labels.to(out.rewards.device).float()
        keep = lab >= 0
        right += int(((r[keep] > 0) == (lab[keep] >= 0.5)).sum())
        n += int(keep.sum())
    metrics = {"eval_loss": loss_sum / max(len(ev.batches), 1), "eval_acc": right / n if n else None}
    if lm_model is not None and ref is not None:
        metrics["eval_auroc_min"] = auroc_min(cfg, lm_model, data, ref, pad_id, device, precision)
    if was_training:
        model.train()
    return metrics


def auroc_min(cfg, lm_model, data: EncodedData, ref: RefTable, pad_id: int, device, precision: str) -> float | None:
    """AUROC of min step reward (beta * log-ratio summed per step) against the outcome labels."""
    idx = [i for i, e in enumerate(data.encs) if e is not None and data.samples[i].label is not None]
    lps = response_logprobs(lm_model, [data.encs[i] for i in idx], pad_id, device, precision, cfg.batch_tokens,
                            show=False)
    mins = [rewards_record(data.encs[i], lp, ref.logps(data.encs[i]).astype(np.float64), cfg.beta,
                           False)["scores"]["min"] for i, lp in zip(idx, lps)]
    return auroc(mins, [data.samples[i].label for i in idx])
