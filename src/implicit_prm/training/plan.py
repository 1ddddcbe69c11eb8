"""Training examples and the step plan: which responses each optimizer step and micro-batch sees, per objective."""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from ..core.errors import ConfigError
from ..data import build_pairs, unpaired
from ..steps.encoding import Encoded


@dataclass
class Example:
    """One training example: one response (unpaired objectives) or a (chosen, rejected) pair of one prompt."""

    rows: tuple[int, ...]  # positions in the list of encoded responses: (response,) or (chosen, rejected)
    labels: tuple[int, ...]  # the label of each row: (outcome,) or (1, 0)


def build_examples(samples, encs: list[Encoded | None], paired: bool, max_pairs_per_prompt: int | None,
                   seed: int) -> tuple[list[Example], dict]:
    """The examples of one objective from the labelled samples; skipped (overlong, encoded None) ones are left out.

    Paired: each correct x incorrect response of a prompt (capped and sampled by build_pairs); else every response.
    Returns the examples and counts for data_stats.json.
    """
    position = {id(s): i for i, s in enumerate(samples)}
    keep = [s for s, e in zip(samples, encs) if e is not None]
    stats = {"n_samples": len(samples), "n_skipped_overlong": len(samples) - len(keep)}
    if paired:
        pairs, pair_stats = build_pairs(keep, max_pairs_per_prompt, seed)
        stats.update(dataclasses.asdict(pair_stats))
        examples = [Example((position[id(w)], position[id(lo)]), (1, 0)) for w, lo in pairs]
    else:
        examples = [Example((position[id(s)],), (s.label,)) for s in unpaired(keep)]
        stats["n_correct"] = sum(e.labels[0] for e in examples)
    stats["n_examples"] = len(examples)
    return examples, stats


def make_plan(n_examples: int, global_batch: int, epochs: int, seed: int, max_steps: int | None,
              groups: list | None = None) -> list[list[int]]:
    """The examples (positions) of every optimizer step's global batch: seeded shuffles, one per epoch; the
    remainder of an epoch that does not fill a global batch is dropped.

    With `groups` (a key per example, e.g. its prompt), the shuffle is of the groups, each group's examples kept
    next to each other in a shuffled order of their own: batches then hold several responses of one prompt, which
    --share-prompts computes once. It changes the order of the updates, not which examples an epoch sees."""
    if n_examples < global_batch:
        raise ConfigError(f"{n_examples} training examples is fewer than one global batch of {global_batch} "
                          "(batch_size x grad_accum x processes); lower --batch-size")
    plan = []
    for epoch in range(epochs):
        order = list(range(n_examples))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        if groups is not None:
            members: dict = {}
            for i in order:
                members.setdefault(groups[i], []).append(i)
            keys = list(members)
            random.Random(f"{seed}:{epoch}:groups").shuffle(keys)
            order = [i for k in keys for i in members[k]]
        plan += [order[s:s + global_batch] for s in range(0, n_examples - global_batch + 1, global_batch)]
    return plan[:max_steps] if max_steps else plan


def micro_batches(global_batch: list[int], batch_size: int, grad_accum: int, rank: int,
                  n_proc: int) -> list[list[int]]:
    """This process's micro-batches of one global batch: micro-batch j on rank p is slice (j * n_proc + p)."""
    b = batch_size
    return [global_batch[(j * n_proc + rank) * b:(j * n_proc + rank + 1) * b] for j in range(grad_accum)]


def batch_rows(batch: list[Example]) -> tuple[list[int], list[int]]:
    """(rows, labels) of a micro-batch in LossBatch's layout: every example's first row, then every second row
    (for pairs: the n chosen, then the n rejected in the same order)."""
    width = len(batch[0].rows)
    rows = [ex.rows[k] for k in range(width) for ex in batch]
    labels = [ex.labels[k] for k in range(width) for ex in batch]
    return rows, labels


def mismatched_pairs(batch: list[Example], encs: list[Encoded], max_length: int) -> list[Encoded]:
    """(prompt_i, response_{i+1}) of a micro-batch, cut to max_length: KTO's reference point for KL(pi || pi_ref)."""
    out = []
    for i, ex in enumerate(batch):
        p, r = encs[ex.rows[0]], encs[batch[(i + 1) % len(batch)].rows[0]]
        room = max_length - len(p.prompt_ids)
        out.append(Encoded(p.prompt_ids, r.response_ids[:room], r.token_steps[:room], r.n_steps))
    return out
