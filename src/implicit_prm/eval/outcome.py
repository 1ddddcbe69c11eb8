"""Outcome evaluation of scored responses: how well each score separates correct from incorrect responses (AUROC).

Input: scored JSONL (or a JSON array), one response per record, any grouping:
  correctness   `correct` (true/false), else `correctness` (true/false), else `label` (0/1). For pre-split records
                (`steps` and no `response`, ProcessBench) `label` is the first wrong step, so there it is
                `correct`, else `final_answer_correct`, else `correctness`.
  scores        flat {agg: number} (methods "<name>.agg") or nested {source: {agg: number}} ("source.agg"), as in
                `implicit_prm.eval.bon`; every record must carry the same methods.

Per score method:
  auroc      P(a random correct response outscores a random incorrect one), ties 1/2 (metrics.auroc); null when a
             class is empty
  acc_at_0   accuracy of "score > 0 predicts correct" (an implicit PRM's reward is 0 for pi_theta == pi_ref)
  optimistic the best accuracy of "score > t predicts correct" over all t, with its t (ties -> the smallest t):
             tuned on the evaluated data itself, hence optimistic
  ci         percentile bootstrap intervals (Efron & Tibshirani 1993) of auroc and acc_at_0: the units (problems, by
             `problem_id`, else `prompt`, else `problem`, as `eval bon` groups them, when every record has one; else
             the responses) are resampled with replacement n_bootstrap times (seeded with `seed`), each resample pools
             its units' responses, and [lo, hi] = the 100 (1 -+ ci_level) / 2 percentiles of the resampled statistic.
             A resample with one class has no AUROC: it is dropped and counted in "ci_dropped". No interval for the
             optimistic figure: its threshold is tuned on the data it scores.
Output JSON (schema "implicit-prm/outcome/v1"):
  {"schema", "input", "n", "n_correct", "score_methods": [...], "optimistic_label": str,
   "methods": {method: {"auroc": float | null, "acc_at_0": float, "optimistic": {"threshold": float, "acc": float},
                        "ci": {"auroc": [lo, hi] | null, "acc_at_0": [lo, hi]} | null, "ci_dropped": int | null}},
   "n_bootstrap", "ci_level", "ci_unit": "problem" | "response", "n_units"}
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.config import field
from ..core.errors import InputError
from ..core.results import text_table, write_result
from ..data.sources import input_records
from ..rewards import auroc
from ..scoring.records import is_presplit, outcome_label, read_scores, score_scales
from .bon import KEY_FIELDS
from .metrics import (
    CI_LEVEL,
    OPTIMISTIC,
    bootstrap_ci,
    check_bootstrap,
    ci_list,
    fmt_auroc,
    fmt_ci,
    pct,
    weighted_auroc,
)

SCHEMA = "implicit-prm/outcome/v1"


@dataclass
class OutcomeConfig:
    input: str = field(help="scored responses (JSONL) with correctness; see `implicit_prm.eval.outcome` for fields")
    output: Optional[str] = field(None, help="JSON results (default: <input stem>.outcome.json)")
    name: str = field("prm", help="source name for flat scores {agg: number}: methods '<name>.<agg>'")
    n_bootstrap: int = field(1000, help="bootstrap resamples of the problems (or responses) for the confidence "
                                        "intervals (0: none)")
    ci_level: float = field(CI_LEVEL, help="confidence level of the percentile bootstrap intervals")
    seed: int = field(0, help="random seed of the bootstrap")

    def __post_init__(self):
        check_bootstrap(self.n_bootstrap, self.ci_level)


def read_outcomes(path: str | Path, name: str = "prm") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(labels (R,) int 0/1, scores (R, M), methods (M,)); InputError naming file, line and field for bad records."""
    return read_outcome_units(path, name)[:3]


def read_outcome_units(path: str | Path, name: str = "prm") -> tuple[np.ndarray, np.ndarray, list[str],
                                                                     np.ndarray | None]:
    """read_outcomes plus units (R,) int: each response's problem (first-appearance order) when every record has a
    problem key (KEY_FIELDS, as `eval bon` groups them), else None (every response its own unit). Scores that are
    probabilities (reward_schema) are read as their logits, so that 0 is p = 1/2 (AUROC is unchanged)."""
    labels, rows, first, keys = [], [], None, []  # first: (line, methods) of the first record
    for line, rec in input_records(path):
        got = outcome_label(path, line, rec)
        if got is None:
            how = ("'correct', 'final_answer_correct' or 'correctness' (true/false)" if is_presplit(rec) else
                   "'correct' (true/false), 'correctness' (true/false) or 'label' (0/1)")
            raise InputError(path, line, "correct", f"missing correctness: expected {how}")
        scores = read_scores(path, line, rec, name, first)
        if first is None:
            first = (line, list(scores))
            scales = score_scales(rec, scores, name)
        for m, scale in scales.items():  # a probability compared as its logit: acc@0 is then acc at p = 1/2
            if scale == "probability" and m in scores:
                p = min(max(scores[m], 1e-12), 1 - 1e-12)
                scores[m] = math.log(p / (1 - p))
        labels.append(got[1])
        rows.append([scores[m] for m in first[1]])
        key_field = next((k for k in KEY_FIELDS if k in rec), None)
        keys.append(None if key_field is None else json.dumps(rec[key_field], sort_keys=True))
    if first is None:
        raise InputError(path, None, None, "no records")
    ids: dict[str, int] = {}
    units = None if None in keys else np.array([ids.setdefault(k, len(ids)) for k in keys])
    return np.array(labels), np.array(rows, dtype=np.float64), first[1], units


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Accuracy of "score > threshold predicts correct". e.g. scores [-1, 2, 3], labels [0, 0, 1], t 0 -> 2/3."""
    return float(np.mean((scores > threshold) == (labels == 1)))


def best_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) of the best "score > t predicts correct"; ties -> the smallest t.

    Candidates: just below the smallest score (all predicted correct), the midpoints between consecutive sorted
    unique scores, and the largest score (all predicted wrong). Counted at once with sorted searches:
    right(t) = #{correct, score > t} + #{incorrect, score <= t}.
    """
    values = np.unique(scores)  # (U,) sorted
    mids = (values[1:] + values[:-1]) / 2
    mids = np.where(mids > values[:-1], mids, values[1:])  # adjacent floats: the midpoint may round down
    cands = np.concatenate([[np.nextafter(values[0], -np.inf)], mids[mids < values[-1]], values[-1:]])  # (C,)
    pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels != 1])
    right = (len(pos) - np.searchsorted(pos, cands, "right")) + np.searchsorted(neg, cands, "right")  # (C,)
    best = int(np.argmax(right))  # the first, i.e. smallest, best candidate
    return float(cands[best]), float(right[best] / len(scores))


def outcome_ci(labels: np.ndarray, scores: np.ndarray, units: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
               level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile bootstrap intervals over units of AUROC and acc_at_0 per method: ((M, 2, 2) [lo, hi] of
    (auroc, acc_at_0), (M, 2) resamples dropped), or None when n_bootstrap = 0.

    Resample b weighs each response by its unit's multiplicity c_b[unit]: AUROC_b = metrics.weighted_auroc (NaN,
    dropped, with one class), acc_at_0_b = sum_u c_b[u] right_u / sum_u c_b[u] n_u (right_u: responses of unit u
    with (score > 0) == correct, n_u: its responses), i.e. the pooled accuracy of the resampled responses.
    """
    n_units = int(units.max()) + 1
    right = (scores > 0) == (labels == 1)[:, None]  # (R, M)
    right_u = np.stack([np.bincount(units, weights=right[:, j], minlength=n_units) for j in range(scores.shape[1])],
                       axis=1)  # (U, M)
    n_u = np.bincount(units, minlength=n_units).astype(np.float64)  # (U,)

    def stat(c: np.ndarray) -> np.ndarray:  # (B, U) -> (B, M, 2)
        aucs = np.stack([weighted_auroc(c, scores[:, j], labels, units) for j in range(scores.shape[1])], axis=1)
        return np.stack([aucs, (c @ right_u) / (c @ n_u)[:, None]], axis=-1)

    return bootstrap_ci(stat, n_units, n_bootstrap, seed, level)


def evaluate(labels: np.ndarray, scores: np.ndarray, methods: list[str], units: np.ndarray | None = None,
             n_bootstrap: int = 1000, seed: int = 0, level: float = CI_LEVEL) -> dict[str, dict]:
    """{method: {"auroc", "acc_at_0", "optimistic": {"threshold", "acc"}, "ci", "ci_dropped"}} for scores (R, M),
    labels (R,) and units (R,) (default: every response its own unit); ci: outcome_ci, None when n_bootstrap = 0."""
    units = np.arange(len(labels)) if units is None else units
    ci = outcome_ci(labels, scores, units, n_bootstrap, seed, level)
    out = {}
    for j, m in enumerate(methods):
        s = scores[:, j]  # (R,)
        t, acc = best_accuracy(s, labels)
        out[m] = {"auroc": auroc(s.tolist(), labels.tolist()), "acc_at_0": accuracy_at(s, labels, 0.0),
                  "optimistic": {"threshold": t, "acc": acc},
                  "ci": None if ci is None else {"auroc": ci_list(ci[0][j, 0]), "acc_at_0": ci_list(ci[0][j, 1])},
                  "ci_dropped": None if ci is None else int(ci[1][j, 0])}
    return out


def format_table(result: dict) -> str:
    """One row per method: AUROC, accuracy (%) at 0, and the optimistic best accuracy (%) with its threshold; each of
    the first two followed by its bootstrap interval when there is one."""
    show = result.get("n_bootstrap", 0) > 0
    level = f"{100 * result.get('ci_level', CI_LEVEL):g}% CI"
    rows = [["method", "AUROC", *([level] if show else []), "acc@0", *([level] if show else []), "acc@best*",
             "best t*"]]
    for m, r in result["methods"].items():
        o, ci = r["optimistic"], r.get("ci") or {}
        auc = [fmt_ci(ci.get("auroc"), 1.0, 3)] if show else []
        acc = [fmt_ci(ci.get("acc_at_0"))] if show else []
        rows.append([m, fmt_auroc(r["auroc"]), *auc, pct(r["acc_at_0"]), *acc, pct(o["acc"]), f"{o['threshold']:.4g}"])
    notes = [f"* {result['optimistic_label']}"]
    if show:
        notes.append(f"CI: percentile bootstrap over the {result['n_units']} {result['ci_unit']}s "
                     f"({result['n_bootstrap']} resamples)")
    return "\n".join([*text_table(rows), *notes])


def run_outcome(cfg: OutcomeConfig) -> dict:
    """The outcome evaluation: read, check, evaluate each score method, print the table, write JSON + config."""
    path = Path(cfg.input)
    labels, scores, methods, units = read_outcome_units(path, cfg.name)
    n_correct = int(labels.sum())
    n_units = len(labels) if units is None else int(units.max()) + 1
    result = {"schema": SCHEMA, "input": str(path), "n": len(labels), "n_correct": n_correct,
              "score_methods": methods, "optimistic_label": OPTIMISTIC,
              "methods": evaluate(labels, scores, methods, units, cfg.n_bootstrap, cfg.seed, cfg.ci_level),
              "n_bootstrap": cfg.n_bootstrap, "ci_level": cfg.ci_level,
              "ci_unit": "response" if units is None else "problem",
              "n_units": n_units}
    print(f"[implicit-prm] outcome: {path}: {len(labels)} responses, {n_correct} correct")
    if n_correct in (0, len(labels)):
        print("[implicit-prm] outcome: only one class (all correct or all wrong); AUROC is undefined (null)")
    print(format_table(result))

    output = Path(cfg.output) if cfg.output else path.with_name(path.stem + ".outcome.json")
    write_result(output, result, replace(cfg, output=str(output)))
    print(f"[implicit-prm] wrote {output}")
    return result
