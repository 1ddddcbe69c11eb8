"""PRMBench step classification (`implicit-prm eval prmbench`), computed as PRMBench's own evaluation does.

PRMBench (Song et al. 2025, arXiv 2501.03124) plants errors in solutions: each record has its steps
(`modified_process`), the 1-based indices of the erroneous ones (`error_steps`) and the kind of error
(`classification`: circular, confidence, counterfactual, deception, domain_inconsistency, missing_condition,
redundency (sic), step_contradiction, multi_solutions). A step is predicted valid when its own score is at or
above the threshold: P(+) for probability formats, sigmoid of the step reward for implicit PRMs (and for an ORM's
logits). With valid steps as the positive class, counted over all steps of all records:
  TP = valid predicted valid, FP = erroneous predicted valid, TN = erroneous predicted erroneous, FN = valid
  predicted erroneous
  F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN), P = TP / (TP + FP), R = TP / (TP + FN)   (the valid steps)
  negative F1 = 2TN / (2TN + FN + FP), P' = TN / (TN + FN), R' = TN / (TN + FP)        (the erroneous steps)
  PRMScore = (F1 + negative F1) / 2
and the same per classification. A precision or recall of 0/0 is null (PRMBench writes -1); an F1 is then still
0 when its class has steps (PRMBench's arithmetic on its -1 gives 0 too), and null only when 2TP + FP + FN = 0. PRMBench also scores the
original solutions of its redundancy records as a 'correct' class, reported only on its own; those are not in
its files as records, so they are not here. The threshold is given (default 0.5) or tuned for the best PRMScore
on another scored file (--tune-on), never on the evaluated one.

An error step past the record's last step (PRMBench's own classified subset400 has such records, e.g. [17, 19, 21]
with 20 steps) matches no step, as in PRMBench's evaluation, which loops over the steps and asks whether each is in
error_steps: the record's labels come from its in-range indices only, it is still evaluated, and it is counted and
listed in the output. Anything else (a non-integer, 0 or a negative index) is refused.

Output JSON (schema "implicit-prm/prmbench/v1"): {"schema", "input", "threshold", "threshold_from": "given" |
"tune_on", "tune_on", "tuned": totals on the tuning file | null, "n_records", "total": counts,
"per_classification": {classification: counts}, "n_records_out_of_range_error_steps", "out_of_range_error_steps":
[past] (the evaluated file's), "tune_on_out_of_range_error_steps": [past] | null}, counts = {TP, FP, TN, FN,
n_steps, precision, recall, f1, negative_precision, negative_recall, negative_f1, prmscore}, past = {line, idx,
classification, n_steps, error_steps: the indices past the last step}.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.results import write_result
from ..core.validation import describe_json
from ..data.sources import input_records
from ..scoring.records import number_list
from ..scoring.schema import record_scale, to_probability
from .metrics import pct

SCHEMA = "implicit-prm/prmbench/v1"
DEFAULT_THRESHOLD = 0.5


@dataclass
class PRMBenchConfig:
    input: str = field(help="scored PRMBench records (`implicit-prm score` on PRMBench's own JSONL)")
    output: Optional[str] = field(None, help="JSON results (default: <input stem>.prmbench.json)")
    threshold: Optional[float] = field(None, help=f"a step is valid when its probability is >= this (default "
                                                  f"{DEFAULT_THRESHOLD} unless --tune-on)")
    tune_on: Optional[str] = field(None, help="another scored PRMBench file: choose the threshold with the best "
                                              "PRMScore there")

    def __post_init__(self):
        if self.threshold is not None and self.tune_on is not None:
            raise ConfigError("fields ['threshold', 'tune_on'] conflict: give at most one")


@dataclass
class StepLabels:
    """Every step of every record: its probability of being valid, whether it is valid, its record's kind."""

    values: np.ndarray  # (S,)
    valid: np.ndarray  # (S,) bool
    kinds: list[str]  # (S,)
    n_records: int
    out_of_range: list[dict]  # records with error steps past their last step: {line, idx, classification, ...}


def read_prmbench(path: str | Path) -> StepLabels:
    """Scored PRMBench records; InputError naming file, line and field for anything missing or inconsistent."""
    values, valid, kinds, n, past = [], [], [], 0, []
    for line, rec in input_records(path):
        if "step_rewards" not in rec:
            raise InputError(path, line, "step_rewards", "missing; score the file first (`implicit-prm score`)")
        v = number_list(path, line, "step_rewards", rec["step_rewards"])
        steps = rec.get("modified_process")
        if not isinstance(steps, list) or len(steps) != len(v):
            raise InputError(path, line, "modified_process", f"expected the list of the {len(v)} scored steps, found "
                                                             f"{describe_json(steps)} (a cut response cannot be "
                                                             "evaluated step by step: rescore with a larger --max-length)")
        errors = rec.get("error_steps")
        if not isinstance(errors, list) or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in errors):
            raise InputError(path, line, "error_steps", f"expected a list of 1-based step indices (integers >= 1; "
                                                        f"this record has {len(v)} steps), found "
                                                        f"{describe_json(errors)}")
        kind = rec.get("classification")
        if not isinstance(kind, str) or not kind:
            raise InputError(path, line, "classification", f"expected the error kind, found {describe_json(kind)}")
        if any(e > len(v) for e in errors):  # matches no step, as in PRMBench's evaluation
            past.append({"line": line, "idx": rec.get("idx"), "classification": kind, "n_steps": len(v),
                         "error_steps": [e for e in errors if e > len(v)]})
        values += list(to_probability(v, record_scale(rec)))
        bad = {e - 1 for e in errors}  # 0-based; those past the last step never match a k below
        valid += [k not in bad for k in range(len(v))]
        kinds += [kind] * len(v)
        n += 1
    if not n:
        raise InputError(path, None, None, "no records")
    return StepLabels(np.asarray(values, dtype=float), np.asarray(valid, dtype=bool), kinds, n, past)


def print_out_of_range(path: str | Path, data: StepLabels, shown: int = 10) -> None:
    """One notice for the records whose error steps lie past their last step (none: nothing printed)."""
    past = data.out_of_range
    if not past:
        return
    where = ", ".join(f"line {p['line']} ({p['idx']}: {p['error_steps']} of {p['n_steps']} steps)"
                      for p in past[:shown])
    more = f" and {len(past) - shown} more (all in the JSON)" if len(past) > shown else ""
    print(f"[implicit-prm] PRMBench: {path}: {len(past)} of {data.n_records} records have error_steps past their last "
          f"step, which match no step (as in PRMBench's evaluation); evaluated on their other steps: {where}{more}")


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _class_f1(hit: int, miss: int) -> float | None:
    """PRMBench's F1 of one class (valid or erroneous steps): 2 hit / (2 hit + miss), miss = FP + FN; None when there
    is nothing to count."""
    return 2 * hit / (2 * hit + miss) if 2 * hit + miss else None


def prmbench_counts(predicted_valid, valid) -> dict:
    """PRMBench's confusion counts and scores over steps (see the module docstring).

    e.g. valid [T, T, F], predicted [T, F, F] -> TP 1, FN 1, TN 1, FP 0; F1 = 2/3, negative F1 = 2/3, PRMScore 2/3.
    """
    pred, valid = np.asarray(predicted_valid, dtype=bool), np.asarray(valid, dtype=bool)
    tp, fp = int((pred & valid).sum()), int((pred & ~valid).sum())
    tn, fn = int((~pred & ~valid).sum()), int((~pred & valid).sum())
    p, r, np_, nr = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(tn, tn + fn), _ratio(tn, tn + fp)
    f1, nf1 = _class_f1(tp, fp + fn), _class_f1(tn, fp + fn)
    return {"TP": tp, "FP": fp, "TN": tn, "FN": fn, "n_steps": len(valid), "precision": p, "recall": r, "f1": f1,
            "negative_precision": np_, "negative_recall": nr, "negative_f1": nf1,
            "prmscore": None if f1 is None or nf1 is None else (f1 + nf1) / 2}


def best_prmscore_threshold(values: np.ndarray, valid: np.ndarray) -> float:
    """The threshold with the highest PRMScore (steps with value >= t predicted valid); ties -> the smallest.
    Candidates: every distinct value and the next float above the largest (all steps erroneous)."""
    cands = np.concatenate([np.unique(values), [np.nextafter(values.max(), np.inf)]])  # (C,)
    pos, neg = np.sort(values[valid]), np.sort(values[~valid])
    tp = len(pos) - np.searchsorted(pos, cands, "left")  # #{v >= t}
    fp = len(neg) - np.searchsorted(neg, cands, "left")
    tn, fn = len(neg) - fp, len(pos) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (2 * tp + fp + fn)  # = 2PR / (P + R)
        nf1 = 2 * tn / (2 * tn + fn + fp)
    score = np.nan_to_num((f1 + nf1) / 2, nan=-1.0)
    return float(cands[int(np.argmax(score))])


def evaluate(data: StepLabels, threshold: float) -> tuple[dict, dict]:
    """(totals, {classification: counts}) at `threshold`."""
    pred = data.values >= threshold
    kinds = np.asarray(data.kinds)
    per = {k: prmbench_counts(pred[kinds == k], data.valid[kinds == k]) for k in sorted(set(data.kinds))}
    return prmbench_counts(pred, data.valid), per


def run_prmbench(cfg: PRMBenchConfig) -> dict:
    """Take or tune the threshold, count and score every step, write JSON + config."""
    path = Path(cfg.input)
    data = read_prmbench(path)
    tuned, threshold, source, tune = None, cfg.threshold, "given", None
    if cfg.tune_on is not None:
        if Path(cfg.tune_on).resolve() == path.resolve():
            raise ConfigError("field 'tune_on': the threshold is never tuned on the evaluated file; give another one")
        tune = read_prmbench(cfg.tune_on)
        print_out_of_range(cfg.tune_on, tune)
        threshold, source = best_prmscore_threshold(tune.values, tune.valid), "tune_on"
        tuned = evaluate(tune, threshold)[0]
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    total, per = evaluate(data, threshold)
    result = {"schema": SCHEMA, "input": str(path), "threshold": threshold, "threshold_from": source,
              "tune_on": cfg.tune_on, "tuned": tuned, "n_records": data.n_records, "total": total,
              "per_classification": per, "n_records_out_of_range_error_steps": len(data.out_of_range),
              "out_of_range_error_steps": data.out_of_range,
              "tune_on_out_of_range_error_steps": None if tune is None else tune.out_of_range}
    print(f"[implicit-prm] PRMBench: {path}: {data.n_records} records, {total['n_steps']} steps, threshold "
          f"{threshold:.6g} ({source})")
    print_out_of_range(path, data)
    print(f"  {'classification':<22} {'steps':>6} {'F1':>6} {'neg F1':>7} {'PRMScore':>9}")
    for name, c in [*per.items(), ("all", total)]:
        print(f"  {name:<22} {c['n_steps']:>6} {pct(c['f1']):>6} {pct(c['negative_f1']):>7} {pct(c['prmscore']):>9}")
    output = Path(cfg.output) if cfg.output else path.with_name(path.stem + ".prmbench.json")
    write_result(output, result, replace(cfg, output=str(output)))
    print(f"[implicit-prm] wrote {output}")
    return result
