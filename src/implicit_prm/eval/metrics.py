"""Metric helpers shared by the evaluations: AUROC, a stable sigmoid, and the formatting of their tables."""
from __future__ import annotations

from typing import Sequence

import numpy as np

OPTIMISTIC = "optimistic (threshold tuned on the test data)"  # the label of a threshold chosen on the data it scores


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


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


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal ("n/a" for None). e.g. 0.1234 -> "12.3"."""
    return "n/a" if x is None else f"{100 * x:.1f}"


def fmt_auroc(x: float | None) -> str:
    """An AUROC with three decimals ("n/a" for None)."""
    return "n/a" if x is None else f"{x:.3f}"


def text_table(rows: list[list[str]]) -> list[str]:
    """Plain-text table lines: the first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [row[0].ljust(widths[0]) + "".join("  " + c.rjust(w) for c, w in zip(row[1:], widths[1:])) for row in rows]
