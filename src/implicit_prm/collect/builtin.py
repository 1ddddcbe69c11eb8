"""`implicit-prm data`: write the built-in verifiable rollouts (data/builtin.py) with their statistics and a FLOPs
ledger that counts the simulated solver's text as the embedded model generating it."""
from __future__ import annotations

from ..data.builtin import BuiltinDataConfig, generate_rollouts
from ..data.stats import stats_path, write_with_stats
from .simulated import simulated_ledger


def write_builtin(cfg: BuiltinDataConfig) -> int:
    """Generate the rollouts and write them atomically to cfg.output, their statistics (data.stats) to
    <output>.stats.json and the config beside it, in that order; print the statistics; returns the count."""

    records = generate_rollouts(cfg)
    balanced = cfg.balance and cfg.samples_per_problem >= 2 and cfg.step_error_rate > 0
    print(f"[implicit-prm] data: writing {len(records)} problems to {cfg.output} (stats: {stats_path(cfg.output)})")
    if cfg.ledger:  # before the data: an output with its config beside it is a finished one

        simulated_ledger("data", [(r["prompt"], r["completions"]) for r in records]).write(cfg.output)
    return write_with_stats(cfg.output, records, cfg, balanced)
