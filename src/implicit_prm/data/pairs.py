"""Training examples from labelled samples: (chosen, rejected) pairs for DPO/NCA, single samples for CE/KTO."""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..core.errors import ConfigError
from .formats import Sample


@dataclass
class PairStats:
    """Counts from build_pairs, for the training log."""

    n_prompts: int  # distinct prompts among labelled samples
    n_prompts_without_pair: int  # prompts lacking a correct or an incorrect response
    n_pairs: int  # pairs kept
    n_pairs_before_cap: int  # pairs before max_pairs_per_prompt was applied


def unpaired(samples: list[Sample]) -> list[Sample]:
    """Labelled samples in file order (CE and KTO train on these one at a time)."""
    return [s for s in samples if s.label is not None]


def build_pairs(
    samples: list[Sample], max_pairs_per_prompt: int | None, seed: int
) -> tuple[list[tuple[Sample, Sample]], PairStats]:
    """Every (correct, incorrect) combination per prompt, as (chosen, rejected); unlabelled samples are ignored.
    A preference record's chosen and rejected (Sample.pair) form its one pair.

    Order: prompts by first appearance; within a prompt, correct samples in file order x incorrect in file order.
    If a prompt has more than `max_pairs_per_prompt` pairs, a random subset of that size is kept (in the
    original order), drawn with random.Random(f"{seed}:{prompt_position}") so a run is reproducible.
    """
    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise ConfigError(f"max_pairs_per_prompt must be at least 1 (or unset for no cap), got {max_pairs_per_prompt}")
    groups: dict[tuple, list[Sample]] = {}  # a preference record's two responses pair only with each other
    for s in unpaired(samples):
        groups.setdefault((s.prompt, s.pair), []).append(s)
    pairs: list[tuple[Sample, Sample]] = []
    without, before_cap = 0, 0
    for position, group in enumerate(groups.values()):
        correct = [s for s in group if s.label == 1]
        wrong = [s for s in group if s.label == 0]
        candidates = [(c, w) for c in correct for w in wrong]
        if not candidates:
            without += 1
            continue
        before_cap += len(candidates)
        if max_pairs_per_prompt is not None and len(candidates) > max_pairs_per_prompt:
            keep = random.Random(f"{seed}:{position}").sample(range(len(candidates)), max_pairs_per_prompt)
            candidates = [candidates[i] for i in sorted(keep)]
        pairs.extend(candidates)
    stats = PairStats(len(groups), without, len(pairs), before_cap)
    return pairs, stats
