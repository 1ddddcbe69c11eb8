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
Output JSON (schema "implicit-prm/outcome/v1"):
  {"schema", "input", "n", "n_correct", "score_methods": [...], "optimistic_label": str,
   "methods": {method: {"auroc": float | null, "acc_at_0": float, "optimistic": {"threshold": float, "acc": float}}}}
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import field
from ..errors import InputError
from ..io import read_json_records
from ..results import write_result
from .metrics import OPTIMISTIC, auroc, fmt_auroc, pct, text_table
from .records import is_presplit, outcome_label, read_scores

SCHEMA = "implicit-prm/outcome/v1"


@dataclass
class OutcomeConfig:
    input: str = field(help="scored responses (JSONL) with correctness; see `implicit_prm.eval.outcome` for fields")
    output: Optional[str] = field(None, help="JSON results (default: <input stem>.outcome.json)")
    name: str = field("prm", help="source name for flat scores {agg: number}: methods '<name>.<agg>'")


def read_outcomes(path: str | Path, name: str = "prm") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(labels (R,) int 0/1, scores (R, M), methods (M,)); InputError naming file, line and field for bad records."""
    labels, rows, first = [], [], None  # first: (line, methods) of the first record
    for line, rec in read_json_records(path):
        got = outcome_label(path, line, rec)
        if got is None:
            how = ("'correct', 'final_answer_correct' or 'correctness' (true/false)" if is_presplit(rec) else
                   "'correct' (true/false), 'correctness' (true/false) or 'label' (0/1)")
            raise InputError(path, line, "correct", f"missing correctness: expected {how}")
        scores = read_scores(path, line, rec, name, first)
        if first is None:
            first = (line, list(scores))
        labels.append(got[1])
        rows.append([scores[m] for m in first[1]])
    if first is None:
        raise InputError(path, None, None, "no records")
    return np.array(labels), np.array(rows, dtype=np.float64), first[1]


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


def evaluate(labels: np.ndarray, scores: np.ndarray, methods: list[str]) -> dict[str, dict]:
    """{method: {"auroc", "acc_at_0", "optimistic": {"threshold", "acc"}}} for scores (R, M) and labels (R,)."""
    out = {}
    for j, m in enumerate(methods):
        s = scores[:, j]  # (R,)
        t, acc = best_accuracy(s, labels)
        out[m] = {"auroc": auroc(s.tolist(), labels.tolist()), "acc_at_0": accuracy_at(s, labels, 0.0),
                  "optimistic": {"threshold": t, "acc": acc}}
    return out


def format_table(result: dict) -> str:
    """One row per method: AUROC, accuracy (%) at 0, and the optimistic best accuracy (%) with its threshold."""
    rows = [["method", "AUROC", "acc@0", "acc@best*", "best t*"]]
    for m, r in result["methods"].items():
        o = r["optimistic"]
        rows.append([m, fmt_auroc(r["auroc"]), pct(r["acc_at_0"]), pct(o["acc"]), f"{o['threshold']:.4g}"])
    return "\n".join([*text_table(rows), f"* {result['optimistic_label']}"])


def run_outcome(cfg: OutcomeConfig) -> dict:
    """The outcome evaluation: read, check, evaluate each score method, print the table, write JSON + config."""
    path = Path(cfg.input)
    labels, scores, methods = read_outcomes(path, cfg.name)
    n_correct = int(labels.sum())
    result = {"schema": SCHEMA, "input": str(path), "n": len(labels), "n_correct": n_correct,
              "score_methods": methods, "optimistic_label": OPTIMISTIC, "methods": evaluate(labels, scores, methods)}
    print(f"[implicit-prm] outcome: {path}: {len(labels)} responses, {n_correct} correct")
    if n_correct in (0, len(labels)):
        print("[implicit-prm] outcome: only one class (all correct or all wrong); AUROC is undefined (null)")
    print(format_table(result))

    output = Path(cfg.output) if cfg.output else path.with_name(path.stem + ".outcome.json")
    write_result(output, result, replace(cfg, output=str(output)))
    print(f"[implicit-prm] wrote {output}")
    return result
