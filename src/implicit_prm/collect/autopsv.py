"""AutoPSV step labels: read where an outcome verifier's confidence collapses, then train a step PRM on them.

AutoPSV (Lu et al. 2024, "AutoPSV: Automated Process-Supervised Verifier", arXiv 2405.16265) trains an outcome
verifier whose confidence v is defined at every step boundary (here: `implicit-prm train --objective orm`, scored
with `implicit-prm score`, which writes v before the first step as `start_value` and after each step as its
step reward). A step k, from v_start = v_{k-1} to v_end = v_k, is labelled wrong when

    v_start < abs_threshold                                   (rule "absolute", default 0.05), or
    (v_end - v_start) / v_start < rel_threshold               (rule "relative", default -0.5: v halves)

(rule "either", the default, applies both). Every step before the first wrong one is labelled 1, the first wrong
one and all after it 0. The labels then train the step-label PRM (`train --objective step_bce`), as the implicit
PRM paper's AutoPSV baseline does (Yuan et al. 2024, arXiv 2412.01981, Sec. 4). The thresholds are options, not
tuned here; change them on dev data only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import write_json, write_jsonl
from ..core.results import write_result
from ..core.validation import describe_json
from ..data.sources import input_records
from ..scoring.records import number_list


def first_wrong_step(start: float, values: list[float], abs_threshold: float = 0.05, rel_threshold: float = -0.5,
                     rule: str = "either") -> int:
    """The index of the first step the rule calls wrong, or -1. values[k] is v after step k; start is v before
    step 0."""
    v_start = start
    for k, v_end in enumerate(values):
        low = v_start < abs_threshold
        drop = v_start > 0 and (v_end - v_start) / v_start < rel_threshold
        if (rule in ("absolute", "either") and low) or (rule in ("relative", "either") and drop):
            return k
        v_start = v_end
    return -1


def autopsv_labels(start: float, values: list[float], abs_threshold: float = 0.05, rel_threshold: float = -0.5,
                   rule: str = "either") -> list[int]:
    """1 for the steps before the first wrong one, 0 from it on."""
    k = first_wrong_step(start, values, abs_threshold, rel_threshold, rule)
    return [1] * len(values) if k < 0 else [1] * k + [0] * (len(values) - k)


@dataclass
class AutoPSVConfig:
    input: str = field(help="responses scored by an outcome verifier (`implicit-prm score --prm ORM_DIR`): each "
                            "record has start_value and step_rewards (its confidence after each step)")
    output: str = field(help="JSONL of flat records {prompt, response, label, step_labels, ...} for "
                             "`implicit-prm train --objective step_bce`")
    rule: Literal["either", "absolute", "relative"] = field("either", help="which test marks a step wrong")
    abs_threshold: float = field(0.05, help="a step is wrong if the confidence at its start is below this")
    rel_threshold: float = field(-0.5, help="a step is wrong if (v_end - v_start) / v_start is below this")

    def __post_init__(self):
        if not 0 <= self.abs_threshold <= 1:
            raise ConfigError(f"field 'abs_threshold' must be in [0, 1], got {self.abs_threshold}")
        if not -1 <= self.rel_threshold <= 0:
            raise ConfigError(f"field 'rel_threshold' must be in [-1, 0], got {self.rel_threshold}")


TRUTH = ("first_error",)  # exact step truth, kept for the labels' accuracy (built-in data)
DROP = ("step_rewards", "q_values", "scores", "start_value", "reward_schema", "step_spans", "token_rewards")


def label_autopsv(cfg: AutoPSVConfig) -> dict:
    """Label every scored response; write the labelled records and `<output>.stats.json`; return the stats."""
    out, n_steps, n_wrong, hits, n_truth = [], 0, 0, 0, 0
    for line, rec in input_records(cfg.input):
        schema = rec.get("reward_schema") or {}
        if "start_value" not in rec or schema.get("scorer") != "orm":
            raise InputError(cfg.input, line, "start_value", "missing: AutoPSV reads an outcome verifier's "
                             "confidence before the first step; score the responses with an ORM (`implicit-prm "
                             "train --objective orm`, then `implicit-prm score`)")
        values = number_list(cfg.input, line, "step_rewards", rec.get("step_rewards"))
        start = rec["start_value"]
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start <= 1:
            raise InputError(cfg.input, line, "start_value", f"expected a probability, found {describe_json(start)}")
        if "response" not in rec or "prompt" not in rec:
            raise InputError(cfg.input, line, "response", "missing; expected scored records with prompt and response")
        labels = autopsv_labels(float(start), values, cfg.abs_threshold, cfg.rel_threshold, cfg.rule)
        correct = rec.get("correctness", rec.get("label"))
        if correct is None:
            raise InputError(cfg.input, line, "correctness", "missing; the step PRM trains on labelled responses")
        new = {k: v for k, v in rec.items() if k not in DROP and k != "correctness"}
        new.update(label=int(bool(correct)), step_labels=labels)
        out.append(new)
        n_steps += len(labels)
        n_wrong += labels.count(0)
        if isinstance(rec.get("first_error"), int) and not isinstance(rec["first_error"], bool):
            fe = rec["first_error"]
            truth = [1 if fe < 0 or k < fe else 0 for k in range(len(labels))]
            hits += sum(a == b for a, b in zip(labels, truth))
            n_truth += len(labels)
    stats = {"n_responses": len(out), "n_steps": n_steps, "frac_steps_wrong": n_wrong / max(n_steps, 1),
             "rule": cfg.rule, "abs_threshold": cfg.abs_threshold, "rel_threshold": cfg.rel_threshold,
             "accuracy_vs_first_error": hits / n_truth if n_truth else None}
    write_result(Path(cfg.output), out, cfg, write=write_jsonl)
    write_json(Path(cfg.output).with_name(Path(cfg.output).name + ".stats.json"), stats)
    print(f"[implicit-prm] AutoPSV labels for {len(out)} responses ({n_steps} steps, {n_wrong} labelled wrong)"
          + (f"; accuracy against first_error {100 * stats['accuracy_vs_first_error']:.1f}%" if n_truth else "")
          + f" -> {cfg.output}", flush=True)
    return stats
