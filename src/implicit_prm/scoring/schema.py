"""What a scored record's numbers mean: the versioned `reward_schema` that `implicit-prm score` writes on every record.

Three scales: an implicit PRM's step rewards are log-ratios, beta * log(pi/pi_ref) summed over a step's tokens, so its q-values
and scores are logits: sigmoid maps them to probabilities. A step-tag scorer (Math-Shepherd PRM, outcome verifier)
writes P(+) at each step's tag: already a probability, which a sigmoid would distort. A sequence-classification
reward model (format orm) writes its head's raw value: a logit, read through a sigmoid like a log-ratio. The evaluations read the
schema and apply the right transform (`to_probability`). Files scored before the schema existed hold implicit
rewards, so a record without one is read as log-ratios.
"""
from __future__ import annotations

import numpy as np

from ..rewards import sigmoid

SCHEMA_NAME = "implicit-prm/scored"
SCHEMA_VERSION = 1
SCALES = ("log_ratio", "probability", "logit")


def implicit_schema(beta: float, reference_free: bool = False) -> dict:
    """step_rewards: beta * log(pi/pi_ref) summed over the step's tokens (reference-free: beta * log pi);
    q_values: their running sums; scores: min / last / sum / mean of the step rewards. All logits."""
    return {"name": SCHEMA_NAME, "version": SCHEMA_VERSION, "scorer": "implicit", "scale": "log_ratio",
            "beta": beta, "reference_free": reference_free}


def readout_schema(scorer: str, fmt: str, scale: str = "probability") -> dict:
    """A value read at one position per step (scoring/readout.py). scorer 'step_prm' (P(+) at each step: formats
    math-shepherd, rlhflow, token-classification) or 'orm' (an outcome model); `format` is the --format that
    read it. step_rewards: the value at each step; q_values: the same (a step's value already judges the prefix
    it ends); scores: min / last / prod / mean of probabilities, or last / min / mean of logits (scale 'logit':
    a sequence-classification reward model, whose 'last' is its model card's score and whose earlier values are
    read at each step's last token). A step-tag ORM trained here also writes start_value, P(+) at the prompt's
    end."""
    return {"name": SCHEMA_NAME, "version": SCHEMA_VERSION, "scorer": scorer, "format": fmt, "scale": scale}


def record_scale(rec: dict) -> str:
    """'log_ratio', 'probability' or 'logit': the record's schema scale; a record without a schema holds log-ratios."""
    schema = rec.get("reward_schema")
    if isinstance(schema, dict) and schema.get("scale") in SCALES:
        return schema["scale"]
    return "log_ratio"


def to_probability(values, scale: str) -> np.ndarray:
    """Values on a probability scale: sigmoid of a logit (log-ratio), a probability as it is."""

    values = np.asarray(values, dtype=float)
    return values if scale == "probability" else sigmoid(values)
