"""What a scored record's numbers mean: the versioned `reward_schema` that `implicit-prm score` writes on every record.

An implicit PRM's step rewards are log-ratios, beta * log(pi/pi_ref) summed over a step's tokens, so its q-values
and scores are logits: sigmoid maps them to probabilities. A step-tag scorer (Math-Shepherd PRM, outcome verifier)
writes P(+) at each step's tag: already a probability, which a sigmoid would distort. The evaluations read the
schema and apply the right transform (`to_probability`). Files scored before the schema existed hold implicit
rewards, so a record without one is read as log-ratios.
"""
from __future__ import annotations

import numpy as np

SCHEMA_NAME = "implicit-prm/scored"
SCHEMA_VERSION = 1
SCALES = ("log_ratio", "probability")


def implicit_schema(beta: float, reference_free: bool = False) -> dict:
    """step_rewards: beta * log(pi/pi_ref) summed over the step's tokens (reference-free: beta * log pi);
    q_values: their running sums; scores: min / last / sum / mean of the step rewards. All logits."""
    return {"name": SCHEMA_NAME, "version": SCHEMA_VERSION, "scorer": "implicit", "scale": "log_ratio",
            "beta": beta, "reference_free": reference_free}


def probability_schema(scorer: str) -> dict:
    """scorer 'step_prm' (Math-Shepherd) or 'orm'. step_rewards: P(+) at the tag after each step; q_values: the
    same (a step's P(+) already estimates the prefix's value); scores: min / last / prod / mean of them; an ORM
    also writes start_value, P(+) at the prompt's end."""
    return {"name": SCHEMA_NAME, "version": SCHEMA_VERSION, "scorer": scorer, "scale": "probability"}


def record_scale(rec: dict) -> str:
    """'log_ratio' or 'probability': the record's schema scale; a record without a schema holds log-ratios."""
    schema = rec.get("reward_schema")
    if isinstance(schema, dict) and schema.get("scale") in SCALES:
        return schema["scale"]
    return "log_ratio"


def to_probability(values, scale: str) -> np.ndarray:
    """Values on a probability scale: sigmoid of a logit (log-ratio), a probability as it is."""
    from .eval.metrics import sigmoid

    values = np.asarray(values, dtype=float)
    return values if scale == "probability" else sigmoid(values)
