"""ProcessBench over its splits: one threshold, F1 per split and their average (`implicit-prm eval processbench`).

ProcessBench (Zheng et al. 2024, arXiv 2412.06559) scores a PRM on four splits (gsm8k, math, olympiadbench,
omnimath) by the F1 of eval/steps.py (harmonic mean of the accuracy on solutions with an error and on those
without), and reports their average. A PRM's threshold is tuned on gsm8k, as the reference evaluation does:
here on a seeded random half of gsm8k, which is then reported on its other half, while every other split is
evaluated in full at that threshold. `--threshold` skips the tuning (every split in full).

Responses cut by `score --overlong truncate` keep their label over all their steps and are never flagged past the
cut; those left out by `--overlong skip` are counted (from the scored file's config: its input) and not scored.

Output JSON (schema "implicit-prm/processbench/v1"):
  {"schema", "signal", "threshold", "threshold_from": "given" | "tune_split", "tune_split", "seed",
   "tuned": metrics on the tuning half | null,
   "splits": {split: {"input", "evaluated_on": "all" | "other half", **metrics, "ci", "ci_dropped",
                      "n_truncated", "n_skipped" | null}},
   "average_f1": mean F1 over the splits given, "splits_missing": [ProcessBench splits not given]}
  metrics as in eval/steps.py: acc_err, acc_ok, f1 (in [0, 1]), n_err, n_ok.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import read_json_file
from ..core.results import config_path, write_result
from ..data.sources import PROCESSBENCH_SPLITS, input_records, input_source
from .metrics import CI_LEVEL, check_bootstrap, pct
from .steps import (
    StepData,
    best_step_error_threshold,
    first_error_prediction,
    processbench_ci,
    processbench_metrics,
    read_step_data,
    seeded_halves,
)

SCHEMA = "implicit-prm/processbench/v1"


@dataclass
class ProcessBenchConfig:
    inputs: list[str] = field(help="scored split files (from `implicit-prm score --input processbench:<split>`), "
                                   "each FILE or SPLIT=FILE; the split is read from the records' ids otherwise")
    output: str = field("processbench.json", help="JSON results")
    tune_split: str = field("gsm8k", help="the split whose seeded random half chooses the threshold")
    threshold: Optional[float] = field(None, help="use this threshold (sigmoid scale for q_value) instead of tuning")
    seed: int = field(0, help="seed of the tuning half and of the bootstrap")
    signal: Literal["q_value", "step_reward"] = field("q_value", help="sigmoid(q-value) / P(+), or the raw step "
                                                                      "reward")
    n_bootstrap: int = field(1000, help="bootstrap resamples per split for the intervals (0: none)")
    ci_level: float = field(CI_LEVEL, help="confidence level of the percentile bootstrap intervals")

    def __post_init__(self):
        check_bootstrap(self.n_bootstrap, self.ci_level)
        if not self.inputs:
            raise ConfigError("field 'inputs': give at least one scored split file")


def split_of(spec: str) -> tuple[str, Path]:
    """(split, file) of an input: SPLIT=FILE, or FILE whose first record's id is '<split>-<n>'."""
    name, sep, rest = spec.partition("=")
    if sep and name in PROCESSBENCH_SPLITS:
        return name, Path(rest)
    path = Path(spec)
    for line, rec in input_records(path):
        split = str(rec.get("id", "")).rsplit("-", 1)[0]
        if split in PROCESSBENCH_SPLITS:
            return split, path
        raise InputError(path, line, "id", f"cannot tell the ProcessBench split from id {rec.get('id')!r}; "
                         f"give the input as SPLIT=FILE (splits: {', '.join(PROCESSBENCH_SPLITS)})")
    raise InputError(path, None, None, "no records")


def overlong_counts(path: Path) -> tuple[int, int | None]:
    """(responses scored only in part, responses left out): the second from the scored file's config (its input
    counted again), None when that cannot be read."""
    n_scored, n_truncated = 0, 0
    for _, rec in input_records(path):
        n_scored += 1
        n_truncated += "n_steps_total" in rec
    try:
        source = input_source(read_json_file(config_path(path))["input"])
        n_source = sum(1 for _ in input_records(source)) if Path(source).is_file() else None
    except (OSError, KeyError, TypeError, InputError):
        n_source = None
    return n_truncated, None if n_source is None else n_source - n_scored


def _evaluate(data: StepData, threshold: float, cfg: ProcessBenchConfig) -> dict:
    preds = [first_error_prediction(s, threshold) for s in data.signals]
    out = processbench_metrics(preds, data.labels)
    ci = processbench_ci(preds, data.labels, cfg.n_bootstrap, cfg.seed, cfg.ci_level)
    out.update(ci=ci and ci[0], ci_dropped=ci and ci[1])
    return out


def run_processbench(cfg: ProcessBenchConfig) -> dict:
    """Tune (or take) one threshold, evaluate every given split at it, average the F1s; write JSON + config."""

    splits: dict[str, tuple[Path, StepData]] = {}
    for spec in cfg.inputs:
        split, path = split_of(spec)
        if split in splits:
            raise ConfigError(f"field 'inputs': split {split} given twice ({splits[split][0]} and {path})")
        splits[split] = (path, read_step_data(path, cfg.signal, truncated_ok=True))
    evaluated = dict.fromkeys(splits, "all")
    tuned, threshold = None, cfg.threshold
    if threshold is None:
        if cfg.tune_split not in splits:
            raise ConfigError(f"no scored {cfg.tune_split} split among the inputs to tune the threshold on; add it "
                              "or pass --threshold")
        path, data = splits[cfg.tune_split]
        tune_idx, eval_idx = seeded_halves(len(data.labels), cfg.seed)
        tune = data.subset(tune_idx)
        try:
            threshold, tuned = best_step_error_threshold(tune.signals, tune.labels)
        except ValueError as e:
            raise InputError(path, None, "label", f"tuning half: {e}") from None
        splits[cfg.tune_split] = (path, data.subset(eval_idx))
        evaluated[cfg.tune_split] = f"other half ({len(eval_idx)} of {len(data.labels)})"
    results = {}
    for split, (path, data) in splits.items():
        n_truncated, n_skipped = overlong_counts(path)
        results[split] = {"input": str(path), "evaluated_on": evaluated[split], **_evaluate(data, threshold, cfg),
                          "n_truncated": n_truncated, "n_skipped": n_skipped}
    f1s = [r["f1"] for r in results.values() if r["f1"] is not None]
    result = {"schema": SCHEMA, "signal": cfg.signal, "threshold": threshold,
              "threshold_from": "given" if cfg.threshold is not None else "tune_split",
              "tune_split": None if cfg.threshold is not None else cfg.tune_split, "seed": cfg.seed, "tuned": tuned,
              "splits": results, "average_f1": float(np.mean(f1s)) if f1s else None,
              "splits_missing": [s for s in PROCESSBENCH_SPLITS if s not in results]}
    _print(result)
    write_result(cfg.output, result, cfg)
    print(f"[implicit-prm] wrote {cfg.output}")
    return result


def _print(result: dict) -> None:
    where = ("given" if result["threshold_from"] == "given"
             else f"tuned on a random half of {result['tune_split']} (seed {result['seed']})")
    print(f"[implicit-prm] ProcessBench, threshold {result['threshold']:.6g} {where}")
    print(f"  {'split':<14} {'evaluated on':<22} {'acc_err':>8} {'acc_ok':>8} {'F1':>6}  cut/skipped")
    for split, r in result["splits"].items():
        print(f"  {split:<14} {r['evaluated_on']:<22} {pct(r['acc_err']):>8} {pct(r['acc_ok']):>8} "
              f"{pct(r['f1']):>6}  {r['n_truncated']}/{'?' if r['n_skipped'] is None else r['n_skipped']}")
    print(f"  average F1 over {len(result['splits'])} split(s): {pct(result['average_f1'])}"
          + (f" (not given: {', '.join(result['splits_missing'])})" if result["splits_missing"] else ""))
