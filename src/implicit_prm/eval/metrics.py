"""Metric helpers shared by the evaluations: AUROC, bootstrap intervals, percentages and intervals as text."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..core.errors import ConfigError

OPTIMISTIC = "optimistic (threshold tuned on the test data)"  # the label of a threshold chosen on the data it scores






def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal ("n/a" for None). e.g. 0.1234 -> "12.3"."""
    return "n/a" if x is None else f"{100 * x:.1f}"


def fmt_auroc(x: float | None) -> str:
    """An AUROC with three decimals ("n/a" for None)."""
    return "n/a" if x is None else f"{x:.3f}"




# ---- bootstrap confidence intervals over units (problems or samples) ----------------------------------------------

CI_LEVEL = 0.95  # the default level: the 2.5th and 97.5th percentiles
BOOTSTRAP_STREAM = 0xB0075  # mixed into the seed, so the resamples are independent of other draws seeded with `seed`


def check_bootstrap(n_bootstrap: int, ci_level: float) -> None:
    """ConfigError unless n_bootstrap >= 0 and 0 < ci_level < 1 (shared by the evaluation configs)."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ConfigError(f"field 'n_bootstrap' must be an integer >= 0 (0 turns the intervals off), got {n_bootstrap}")
    if not 0 < ci_level < 1:
        raise ConfigError(f"field 'ci_level' must be between 0 and 1 (e.g. 0.95), got {ci_level}")


def bootstrap_counts(n_units: int, n_bootstrap: int, seed: int = 0) -> np.ndarray:
    """(B, U) int: how often each of U units is drawn in each of B resamples of U units drawn with replacement.

    Resample b draws indices i_1..i_U uniformly from 0..U-1 (numpy Generator seeded with [seed, BOOTSTRAP_STREAM]);
    counts[b, u] = #{k: i_k = u}. Any statistic of the resampled units is a statistic of these weights, e.g. the
    resampled mean is counts[b] @ values / U, which is what lets the statistics below run on all B at once.
    """
    idx = np.random.default_rng([seed, BOOTSTRAP_STREAM]).integers(0, n_units, size=(n_bootstrap, n_units))
    flat = (idx + np.arange(n_bootstrap)[:, None] * n_units).ravel()
    return np.bincount(flat, minlength=n_bootstrap * n_units).reshape(n_bootstrap, n_units)


def percentile_interval(stats: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of bootstrap statistics (B, ...) -> ([lo, hi] as (..., 2), #dropped (...)).

    lo, hi = the 100 (1 - level) / 2 and 100 (1 + level) / 2 percentiles of the B statistics (numpy's linear
    interpolation between order statistics); the percentile bootstrap of Efron & Tibshirani (1993, ch. 13).
    NaN statistics (undefined on that resample, e.g. an AUROC with one class) are dropped and counted; an entry with
    every resample dropped gets [nan, nan].
    """
    stats = np.asarray(stats, dtype=np.float64)
    flat = stats.reshape(len(stats), -1)  # (B, K)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out = np.full((flat.shape[1], 2), np.nan)
    dropped = np.isnan(flat).sum(axis=0)  # (K,)
    for k in range(flat.shape[1]):
        kept = flat[~np.isnan(flat[:, k]), k]
        if kept.size:
            out[k] = np.percentile(kept, q)
    return out.reshape(*stats.shape[1:], 2), dropped.reshape(stats.shape[1:])


def bootstrap_ci(statistic: Callable[[np.ndarray], np.ndarray], n_units: int, n_bootstrap: int = 1000,
                 seed: int = 0, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile bootstrap interval of a statistic over units resampled with replacement; None when n_bootstrap = 0.

    statistic: counts (B, U) -> (B, ...) statistics (NaN = undefined on that resample), where counts[b, u] is how
    often unit u is in resample b (bootstrap_counts): one call for all resamples, so a statistic written with
    weights (counts @ values, ...) is vectorised. Returns percentile_interval's ([lo, hi] (..., 2), #dropped (...)).
    """
    if n_bootstrap == 0:
        return None
    return percentile_interval(statistic(bootstrap_counts(n_units, n_bootstrap, seed)), level)


def weighted_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Resampled means of per-unit values: counts (B, U), values (U, ...) -> (B, ...) = counts @ values / U.

    Centred on the first unit's value, so units with identical values give exactly that value (a zero-width interval).
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(len(values), -1) - values.reshape(len(values), -1)[:1]  # (U, K)
    return (values[:1].reshape(1, -1) + counts @ flat / counts.shape[1]).reshape(len(counts), *values.shape[1:])


def bootstrap_mean_ci(values, n_bootstrap: int = 1000, seed: int = 0,
                      level: float = CI_LEVEL) -> np.ndarray | None:
    """[lo, hi] (..., 2) of the mean over units of per-unit values (U, ...): the percentile bootstrap of
    mean_u values[u] (all columns resampled together); None when n_bootstrap = 0."""
    values = np.asarray(values, dtype=np.float64)
    got = bootstrap_ci(lambda c: weighted_mean(c, values), len(values), n_bootstrap, seed, level)
    return None if got is None else got[0]


def weighted_auroc(counts: np.ndarray, scores: np.ndarray, labels: np.ndarray, unit: np.ndarray,
                   chunk: int = 1 << 22, max_pair_units: int = 1024) -> np.ndarray:
    """AUROC of the pooled responses of each resample: counts (B, U), scores/labels/unit (R,) -> (B,), NaN = one class.

    Response r weighs w_r = counts[b, unit[r]] (its unit's multiplicity), so this is metrics.auroc on the resampled
    responses: AUROC_b = sum_{i correct, j incorrect} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W+ W-).
    Up to max_pair_units units it is the quadratic form c_b^T A c_b / ((c_b @ n+) (c_b @ n-)) with the (U, U) pair
    matrix A[u, v] = sum_{i correct in u, j incorrect in v} ([s_i > s_j] + [s_i = s_j] / 2) (_pair_matrix);
    beyond, chunks of about `chunk` response weights, with scores grouped into sorted unique values g and Wp_g / Wn_g
    the correct / incorrect weight at g: sum_g Wp_g (sum_{h<g} Wn_h + Wn_g / 2) / (W+ W-).
    """
    n_units = counts.shape[1]
    pos = labels == 1
    if n_units <= max_pair_units:
        c = counts.astype(np.float64)
        n_pos = np.bincount(unit, weights=pos.astype(np.float64), minlength=n_units)  # (U,)
        n_neg = np.bincount(unit, minlength=n_units) - n_pos
        den = (c @ n_pos) * (c @ n_neg)  # (B,) W+ W-
        if not den.any():
            return np.full(len(counts), np.nan)
        num = ((c @ _pair_matrix(scores, pos, unit, n_units, chunk)) * c).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)
    order = np.argsort(scores, kind="stable")
    s, pos, u = scores[order], pos[order], unit[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first index of each unique score
    out = np.empty(len(counts))
    step = max(1, chunk // max(1, len(s)))
    for b in range(0, len(counts), step):
        w = counts[b:b + step][:, u].astype(np.float64)  # (b, R)
        wp = np.add.reduceat(w * pos, starts, axis=1)  # (b, G)
        wn = np.add.reduceat(w * ~pos, starts, axis=1)
        below = np.cumsum(wn, axis=1) - wn
        n_pos, n_neg = wp.sum(axis=1), wn.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = (wp * (below + wn / 2)).sum(axis=1) / (n_pos * n_neg)
        out[b:b + step] = np.where((n_pos > 0) & (n_neg > 0), a, np.nan)
    return out


def _pair_matrix(scores: np.ndarray, pos: np.ndarray, unit: np.ndarray, n_units: int, chunk: int) -> np.ndarray:
    """(U, U): A[u, v] = sum over correct i in unit u and incorrect j in unit v of [s_i > s_j] + [s_i = s_j] / 2.

    Built in blocks of columns v: the incorrect counts per (unique score g, unit v), their running sum below g plus
    half the count at g, gathered at each correct response's g and summed per unit u.
    """
    _, g = np.unique(scores, return_inverse=True)
    n_g = int(g.max()) + 1
    neg_g, neg_u = g[~pos], unit[~pos]
    order = np.argsort(unit[pos], kind="stable")
    pg, pu = g[pos][order], unit[pos][order]  # correct responses, grouped by unit
    starts = np.flatnonzero(np.r_[True, pu[1:] != pu[:-1]])
    a = np.zeros((n_units, n_units))
    step = max(1, chunk // max(n_g, len(pg)))
    for v0 in range(0, n_units, step):
        w = min(step, n_units - v0)
        sel = (neg_u >= v0) & (neg_u < v0 + w)
        nm = np.bincount(neg_g[sel] * w + neg_u[sel] - v0, minlength=n_g * w).reshape(n_g, w).astype(np.float64)
        below = np.cumsum(nm, axis=0) - nm / 2  # (G, w): strictly below + half the ties
        a[pu[starts], v0:v0 + w] = np.add.reduceat(below[pg], starts, axis=0)
    return a


def ci_list(ci) -> list | None:
    """An interval array (..., 2) as nested JSON lists; an undefined interval (NaN ends) -> None; None stays None."""
    def clean(x):
        return [clean(y) for y in x] if isinstance(x[0], list) else (None if np.isnan(x).any() else x)

    return None if ci is None else clean(np.asarray(ci, dtype=np.float64).tolist())


def fmt_ci(ci, scale: float = 100.0, digits: int = 1) -> str:
    """An interval [lo, hi] as "[52.1, 70.3]" (scaled; "n/a" for None or NaN ends)."""
    if ci is None or any(x is None or np.isnan(x) for x in ci):
        return "n/a"
    lo, hi = (round(scale * x, digits) + 0.0 for x in ci)  # + 0.0: a rounded -0.0 prints as 0.0
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"
