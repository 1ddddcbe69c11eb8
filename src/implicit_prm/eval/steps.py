"""Step-error detection, ProcessBench style: flag the first step whose sigmoid(q-value) falls below a threshold.

ProcessBench (Zheng et al. 2024, arXiv 2412.06559) asks for the index of the first wrong step of a solution, or -1 if
every step is right. An implicit PRM (Yuan et al. 2024, arXiv 2412.01981) answers with its q-values: the prediction is
the first step k with sigmoid(q^k) < threshold (`signal="q_value"`; for a scorer whose q-values are already
probabilities, a step-tag PRM's P(+), the value itself: scoring/schema.py), or with r^k < threshold on the raw step reward
(`signal="step_reward"`); -1 if no step is below. The metric (ProcessBench's):
  acc_err = accuracy of the predicted index on samples with a wrong step (label != -1)
  acc_ok  = accuracy (prediction == -1) on samples whose steps are all right (label == -1)
  F1      = 2 * acc_err * acc_ok / (acc_err + acc_ok)   (0 when both are 0)
Uncertainty: at the fixed threshold, a percentile bootstrap interval (Efron & Tibshirani 1993) of each over the
samples (one solution per problem in ProcessBench), resampled with replacement n_bootstrap times (seeded with
`seed`): [lo, hi] = the 100 (1 -+ ci_level) / 2 percentiles; a resample with an empty class leaves that metric (and
F1) undefined, and it is dropped from that metric's percentiles and counted in "ci_dropped". The optimistic row has
no interval: its threshold is re-chosen on the data it scores, so it is an upper bound, not an estimate with an error.

Input: scored JSONL/JSON records (from `implicit-prm score`) with `q_values` (or `step_rewards`) and the true first
wrong step: ProcessBench's `label` when the record has `steps`, else the built-in data's `first_error`.

Output JSON (schema "implicit-prm/steps/v1"):
  {"schema", "input", "signal", "scales" (the records' reward_schema scales), "n", "n_err", "n_ok",
   "threshold_from": "given" | "tune_on" | "split_half" | null, "threshold": float | null,
   "tune_on": path | null, "split": {"seed", "n_tune", "n_eval"} | null,
   "tuned": metrics on the tuning data | null, "evaluated": metrics at `threshold` on the evaluated samples | null,
   "optimistic": {"label": "optimistic (threshold tuned on the test data)", "threshold", **metrics} | null,
   "n_bootstrap", "ci_level"}
  where metrics = {"acc_err", "acc_ok", "f1", "n_err", "n_ok"} (accuracies in [0, 1]; null for an empty class), and
  "evaluated" adds "ci": {"acc_err": [lo, hi] | null, "acc_ok": ..., "f1": ...} | null (null when n_bootstrap = 0)
  and "ci_dropped": {metric: resamples dropped}.
With `split_half`, "evaluated" and "optimistic" describe the evaluation half only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.results import write_result
from ..core.validation import describe_json
from ..data.sources import input_records
from ..scoring.records import number_list
from ..scoring.schema import record_scale, to_probability
from .metrics import CI_LEVEL, OPTIMISTIC, bootstrap_ci, check_bootstrap, ci_list, fmt_ci, pct

SCHEMA = "implicit-prm/steps/v1"


@dataclass
class StepsConfig:
    input: str = field(help="scored JSONL/JSON with q_values (or step_rewards) and 'label' (ProcessBench, with "
                            "'steps') or 'first_error' (built-in data)")
    output: Optional[str] = field(None, help="JSON results (default: <input stem>.steps.json)")
    tune_on: Optional[str] = field(None, help="scored file to choose the F1-best threshold on, then apply to input")
    threshold: Optional[float] = field(None, help="flag the first step whose signal is below this (sigmoid scale "
                                                  "for q_value, raw for step_reward)")
    signal: Literal["q_value", "step_reward"] = field("q_value", help="sigmoid(q-value) or the raw step reward")
    split_half: bool = field(False, help="tune on a seeded random half of input, evaluate on the other half")
    seed: int = field(0, help="random seed of --split-half and of the bootstrap")
    n_bootstrap: int = field(1000, help="bootstrap resamples of the samples for the confidence intervals (0: none)")
    ci_level: float = field(CI_LEVEL, help="confidence level of the percentile bootstrap intervals")

    def __post_init__(self):
        check_bootstrap(self.n_bootstrap, self.ci_level)
        chosen = [name for name, on in (("threshold", self.threshold is not None),
                                        ("tune_on", self.tune_on is not None), ("split_half", self.split_half)) if on]
        if len(chosen) > 1:
            raise ConfigError(f"fields {chosen} conflict: give at most one of threshold, tune_on, split_half")


def first_error_prediction(values: Sequence[float], threshold: float) -> int:
    """Index of the first step whose signal value is < threshold; -1 if none.

    values: one signal value per step, already on the threshold's scale (sigmoid(q) or the raw step reward).
    e.g. values [0.9, 0.6, 0.3, 0.2], threshold 0.5 -> 2; threshold 0.1 -> -1.
    """
    below = np.flatnonzero(np.asarray(values, dtype=np.float64) < threshold)
    return int(below[0]) if below.size else -1


def _processbench_f1(acc_err: float | None, acc_ok: float | None) -> float | None:
    """ProcessBench's F1: the harmonic mean of acc_err and acc_ok (0 when both are 0; None for an empty class)."""
    if acc_err is None or acc_ok is None:
        return None
    return 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)


def processbench_metrics(preds: Sequence[int], labels: Sequence[int]) -> dict:
    """ProcessBench's acc_err, acc_ok and their harmonic mean F1 (see the module docstring); None for an empty class."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    err = labels != -1
    n_err, n_ok = int(err.sum()), int((~err).sum())
    acc_err = float(np.mean(preds[err] == labels[err])) if n_err else None
    acc_ok = float(np.mean(preds[~err] == -1)) if n_ok else None
    return {"acc_err": acc_err, "acc_ok": acc_ok, "f1": _processbench_f1(acc_err, acc_ok), "n_err": n_err,
            "n_ok": n_ok}


def processbench_ci(preds: Sequence[int], labels: Sequence[int], n_bootstrap: int = 1000, seed: int = 0,
                    level: float = CI_LEVEL) -> tuple[dict, dict] | None:
    """Percentile bootstrap intervals of acc_err, acc_ok and F1 over samples: ({metric: [lo, hi] | None},
    {metric: resamples dropped}), or None when n_bootstrap = 0.

    With c_b the multiplicities of resample b (metrics.bootstrap_counts) and right = (pred == label):
    acc_err_b = sum c_b right err / sum c_b err, acc_ok_b = sum c_b right ok / sum c_b ok (err = label != -1, ok =
    label == -1), F1_b as in _processbench_f1; a metric is NaN (dropped) on a resample whose class is empty.
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    err = (labels != -1).astype(np.float64)
    right = (preds == labels).astype(np.float64)  # for label -1: predicted -1

    def stat(c: np.ndarray) -> np.ndarray:  # (B, U) -> (B, 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = c @ (right * err) / (c @ err)  # 0/0 -> NaN
            b = c @ (right * (1 - err)) / (c @ (1 - err))
            f1 = np.where(a + b > 0, 2 * a * b / np.where(a + b > 0, a + b, 1), 0.0)
        return np.stack([a, b, np.where(np.isnan(a) | np.isnan(b), np.nan, f1)], axis=1)

    got = bootstrap_ci(stat, len(labels), n_bootstrap, seed, level)
    if got is None:
        return None
    names = ("acc_err", "acc_ok", "f1")
    return ({k: ci_list(got[0][i]) for i, k in enumerate(names)}, {k: int(got[1][i]) for i, k in enumerate(names)})


def best_step_error_threshold(signals: Sequence[Sequence[float]],
                              labels: Sequence[int]) -> tuple[float, dict]:
    """The threshold with the highest ProcessBench F1 (first-error prediction, see the module docstring) over the
    candidates; ties -> the smallest threshold.

    Candidates: the smallest signal value (flags nothing, since a step is flagged when value < threshold), the
    midpoints between consecutive sorted unique values, and the next float above the largest (flags every step 0).
    Each sample is predicted right on an interval of thresholds, so every candidate is counted at once:
    with m_k the running minimum of its values, a sample with label l >= 0 is right for m_l < t <= m_{l-1}
    (m_{-1} = +inf), and a sample with label -1 for t <= m_last. O((n_values + n_samples) log n).
    """
    labels = np.asarray(labels)
    if not (labels == -1).any() or not (labels != -1).any():
        raise ValueError("choosing a threshold needs samples both with (label != -1) and without (label -1) an error")
    runmin = [np.minimum.accumulate(np.asarray(s, dtype=np.float64)) for s in signals]
    values = np.unique(np.concatenate(runmin))  # only running minima can change a prediction
    mids = (values[1:] + values[:-1]) / 2
    mids = np.where(mids > values[:-1], mids, values[1:])  # adjacent floats: the midpoint may round down
    cands = np.concatenate([values[:1], mids, [np.nextafter(values[-1], np.inf)]])  # (C,)

    lo = np.sort([m[l] for m, l in zip(runmin, labels) if l >= 0])
    hi = np.sort([m[l - 1] if l > 0 else np.inf for m, l in zip(runmin, labels) if l >= 0])
    ok_min = np.sort([m[-1] for m, l in zip(runmin, labels) if l == -1])
    right_err = np.searchsorted(lo, cands, "left") - np.searchsorted(hi, cands, "left")  # #{lo < t <= hi}  (C,)
    right_ok = len(ok_min) - np.searchsorted(ok_min, cands, "left")  # #{t <= min}  (C,)
    acc_err, acc_ok = right_err / len(lo), right_ok / len(ok_min)
    total = acc_err + acc_ok
    f1 = np.where(total > 0, 2 * acc_err * acc_ok / np.where(total > 0, total, 1), 0.0)
    t = float(cands[int(np.argmax(f1))])  # argmax takes the first, i.e. smallest, best candidate
    return t, processbench_metrics([first_error_prediction(s, t) for s in signals], labels)


@dataclass
class StepData:
    """The signal values of each sample's steps (on the threshold's scale) and its first wrong step (-1 = none)."""

    signals: list[np.ndarray]
    labels: np.ndarray
    lines: list[int]
    scales: frozenset = frozenset()  # the records' reward_schema scales (scoring/schema.py)

    def subset(self, idx: Sequence[int]) -> "StepData":
        return StepData([self.signals[i] for i in idx], self.labels[list(idx)], [self.lines[i] for i in idx],
                        self.scales)


def first_wrong_step(path, line, rec: dict, n: int) -> int:
    """A scored record's first wrong step (-1: none) of its n scored steps: ProcessBench's `label` (with `steps`),
    the built-in data's `first_error`, or the first False of TRL's stepwise `labels` (one bool per step)."""
    if isinstance(rec.get("completions"), list) and isinstance(rec.get("labels"), list):  # TRL stepwise
        step_labels = rec["labels"]
        if len(step_labels) != n or not all(isinstance(x, bool) for x in step_labels):
            raise InputError(path, line, "labels", f"expected one true/false per scored step ({n}), found "
                                                   f"{describe_json(step_labels)}")
        return next((i for i, ok in enumerate(step_labels) if not ok), -1)
    label_key = "label" if "steps" in rec and "label" in rec else "first_error"
    if label_key not in rec:
        raise InputError(path, line, "label" if "steps" in rec else "first_error",
                         "missing the first wrong step: expected 'label' (ProcessBench, with 'steps'), "
                         "'first_error' (built-in data) or TRL's stepwise 'labels': a step index, or -1 if every "
                         "step is right")
    label = rec[label_key]
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < n:
        raise InputError(path, line, label_key,
                         f"expected -1 or a step index 0..{n - 1} ({n} steps scored), found {describe_json(label)}")
    return label


def read_step_data(path: str | Path, signal: str = "q_value", truncated_ok: bool = False) -> StepData:
    """Read scored records; InputError naming file, line and field for anything missing or inconsistent.
    `truncated_ok`: a response scored only in part (--overlong truncate: it has n_steps_total) keeps its label
    over all its steps, and its unscored steps are never flagged."""
    key = "q_values" if signal == "q_value" else "step_rewards"
    signals, labels, lines, scales = [], [], [], set()
    for line, rec in input_records(path):
        if key not in rec:
            raise InputError(path, line, key, "missing; score the file first (`implicit-prm score`)")
        values = np.array(number_list(path, line, key, rec[key]))
        n = len(values)
        if truncated_ok and isinstance(rec.get("n_steps_total"), int) and rec["n_steps_total"] >= n:
            n = rec["n_steps_total"]
        if "steps" in rec:
            if not isinstance(rec["steps"], list):
                raise InputError(path, line, "steps", f"expected a list of strings, found {describe_json(rec['steps'])}")
            if len(rec["steps"]) != n:
                hint = (" (the response was truncated when scoring; rescore with a larger --max-length)"
                        if "n_steps_total" in rec else "")
                raise InputError(path, line, key, f"has {n} values but 'steps' has {len(rec['steps'])}; expected "
                                                  f"one per step{hint}")
        labels.append(first_wrong_step(path, line, rec, n))
        scales.add(record_scale(rec))
        signals.append(to_probability(values, record_scale(rec)) if signal == "q_value" else values)
        lines.append(line)
    if not signals:
        raise InputError(path, None, None, "no records")
    return StepData(signals, np.array(labels), lines, frozenset(scales))


def seeded_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tuning, evaluation) sample indices, sorted: a seeded random half (n // 2) and the rest."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n // 2]), np.sort(perm[n // 2:])


def _tune(data: StepData, path, what: str) -> tuple[float, dict]:
    try:
        return best_step_error_threshold(data.signals, data.labels)
    except ValueError as e:
        raise InputError(path, None, "label", f"{what}: {e}") from None


def _summary(m: dict) -> str:
    ci = m.get("ci") or {}
    return "  ".join(f"{name} {pct(m[k])}" + (f" {fmt_ci(ci[k])}" if ci else "")
                     for name, k in (("acc_err", "acc_err"), ("acc_ok", "acc_ok"), ("F1", "f1")))


def run_steps(cfg: StepsConfig) -> dict:
    """The step-error evaluation: choose or take a threshold, report ProcessBench metrics, write JSON + config."""
    path = Path(cfg.input)
    data = read_step_data(path, cfg.signal)
    threshold, tuned, split, source = cfg.threshold, None, None, None
    evaluated_data = data
    if cfg.threshold is not None:
        source = "given"
    elif cfg.tune_on is not None:
        source = "tune_on"
        threshold, tuned = _tune(read_step_data(cfg.tune_on, cfg.signal), cfg.tune_on, "tuning file")
    elif cfg.split_half:
        source = "split_half"
        tune_idx, eval_idx = seeded_halves(len(data.labels), cfg.seed)
        threshold, tuned = _tune(data.subset(tune_idx), path, "tuning half")
        evaluated_data = data.subset(eval_idx)
        split = {"seed": cfg.seed, "n_tune": len(tune_idx), "n_eval": len(eval_idx)}

    evaluated = None
    if threshold is not None:
        preds = [first_error_prediction(s, threshold) for s in evaluated_data.signals]
        evaluated = processbench_metrics(preds, evaluated_data.labels)
        ci = processbench_ci(preds, evaluated_data.labels, cfg.n_bootstrap, cfg.seed, cfg.ci_level)
        evaluated.update(ci=ci and ci[0], ci_dropped=ci and ci[1])
    try:
        opt_t, opt = best_step_error_threshold(evaluated_data.signals, evaluated_data.labels)
        optimistic = {"label": OPTIMISTIC, "threshold": opt_t, **opt}
    except ValueError:
        optimistic = None

    counts = processbench_metrics(data.labels, data.labels)
    result = {"schema": SCHEMA, "input": str(path), "signal": cfg.signal, "scales": sorted(data.scales),
              "n": len(data.labels),
              "n_err": counts["n_err"], "n_ok": counts["n_ok"], "threshold_from": source, "threshold": threshold,
              "tune_on": cfg.tune_on, "split": split, "tuned": tuned, "evaluated": evaluated, "optimistic": optimistic,
              "n_bootstrap": cfg.n_bootstrap, "ci_level": cfg.ci_level}

    print(f"[implicit-prm] steps: {path}: {result['n']} samples ({result['n_err']} with a wrong step, "
          f"{result['n_ok']} all right), signal {cfg.signal}")
    if tuned is not None:
        where = cfg.tune_on if source == "tune_on" else f"a random half (seed {cfg.seed}, {split['n_tune']} samples)"
        print(f"  threshold {threshold:.6g} tuned on {where}: {_summary(tuned)}")
    if evaluated is not None:
        on = f"the other half ({split['n_eval']} samples)" if split else "the input"
        print(f"  at threshold {threshold:.6g} on {on}: {_summary(evaluated)}")
        if evaluated["ci"]:
            print(f"  [lo, hi]: {100 * cfg.ci_level:g}% percentile bootstrap interval over the "
                  f"{len(preds)} samples ({cfg.n_bootstrap} resamples, threshold fixed)")
    if optimistic is not None:
        print(f"  {OPTIMISTIC}: threshold {opt_t:.6g}: {_summary(opt)}")

    output = Path(cfg.output) if cfg.output else path.with_name(path.stem + ".steps.json")
    write_result(output, result, replace(cfg, output=str(output)))
    print(f"[implicit-prm] wrote {output}")
    return result
