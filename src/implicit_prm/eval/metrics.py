"""Outcome metrics on scored responses: AUROC of a score at separating correct from incorrect responses."""
from __future__ import annotations

from typing import Sequence


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a random correct response outscores a random incorrect one (ties count 1/2).

    Computed from average ranks (Mann-Whitney U). None when one class is empty.
    """
    pos = sum(1 for l in labels if l == 1)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over runs of tied scores
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, l in zip(ranks, labels) if l == 1)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def first_error_hit_rate(step_rewards: Sequence[Sequence[float]], first_errors: Sequence[int]) -> float | None:
    """Fraction of wrong solutions (first_error >= 0) whose lowest-reward step is the true first wrong step."""
    hits = [min(range(len(r)), key=lambda k: r[k]) == fe for r, fe in zip(step_rewards, first_errors) if fe >= 0]
    return sum(hits) / len(hits) if hits else None
