"""Experiment tracking for `train --report-to`: accelerate's trackers (tensorboard, wandb, mlflow, trackio) get the
run's config once and the training log's numbers at every step; their files go under the output folder unless
`--logging-dir` says otherwise."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.errors import ConfigError

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def _installed(name: str) -> bool:
    from accelerate import utils

    return getattr(utils, f"is_{name}_available")()


def resolve_trackers(report_to: str, say=print) -> list[str]:
    """The trackers to log with: [] for 'none'; 'all' = every installed one (saying which are not); one name must
    be installed (else ConfigError naming its package)."""
    if report_to == "none":
        return []
    if report_to == "all":
        have = [t for t in TRACKERS if _installed(t)]
        missing = [t for t in TRACKERS if t not in have]
        if missing:
            say(f"[implicit-prm] --report-to all: not installed, so not logged to: {', '.join(missing)} "
                f"(pip install {' '.join(PACKAGES[t] for t in missing)})")
        return have
    if report_to not in TRACKERS:
        raise ConfigError(f"field 'report_to': {report_to!r}; one of none, all, {', '.join(TRACKERS)}")
    if not _installed(report_to):
        raise ConfigError(f"field 'report_to': {report_to} is not installed (pip install {PACKAGES[report_to]})")
    return [report_to]


def logging_dir(cfg) -> Path:
    """Where the trackers write: --logging-dir, else <output>/runs."""
    return Path(cfg.logging_dir) if cfg.logging_dir else Path(cfg.output) / "runs"


def tracker_config(cfg) -> dict:
    """The config as trackers take it: scalars as they are, anything else as text."""
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
            for k, v in dataclasses.asdict(cfg).items()}


def step_values(rec: dict) -> dict[str, float]:
    """The numbers of one training-log record, without its step (given separately) and empty values."""
    return {f"train/{k}": float(v) for k, v in rec.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
