"""Implicit process rewards: step spans -> token-to-step map -> token rewards -> step rewards, q-values, scores.

Pure functions of lists and tensors; where the step spans come from is `steps/splitting.py`.

Following Yuan et al. 2024 (arXiv 2412.01981), with r(y) = beta * log(pi_theta(y) / pi_ref(y)):
  token reward   r_t = beta * (log pi_theta(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))
  step reward    r^k = sum of r_t over the tokens of step k
  q-value        q^k = r^1 + ... + r^k        (the paper's q_theta^t, an outcome-reward-to-go)
The paper scores a response by its lowest step reward (`min`).
"""
from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np
import torch


def token_steps(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Step index of each token: the step whose span holds the token's first character.

    offsets: (start, end) character offsets of each response token, from one tokenization of the whole response.
    A token whose first character is past the last span (cannot happen for spans covering the text) joins the last.
    """
    starts = [s for s, _ in spans]
    return [min(max(bisect.bisect_right(starts, s) - 1, 0), len(spans) - 1) for s, _ in offsets]


def token_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor | None, beta: float) -> torch.Tensor:
    """beta * (log pi_theta - log pi_ref) per token; reference-free (ref_logps None) gives beta * log pi_theta."""
    return beta * (policy_logps if ref_logps is None else policy_logps - ref_logps)


def step_rewards(tok_rewards: torch.Tensor, tok_steps: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Sum token rewards (T,) into steps (n_steps,) by their step index (T,); a step with no token gets 0."""
    out = torch.zeros(n_steps, dtype=tok_rewards.dtype, device=tok_rewards.device)
    return out.index_add_(0, tok_steps.to(tok_rewards.device), tok_rewards)


def q_values(step_r: torch.Tensor) -> torch.Tensor:
    """Running sum of step rewards: q^k = sum_{j<=k} r^j."""
    return torch.cumsum(step_r, dim=0)


def aggregate(values: list[float], scale: str = "log_ratio") -> dict[str, float]:
    """A response's scores from its per-step values, by the scale of the values (the reward schema's `scale`).

    log_ratio (implicit step rewards): min, the lowest step reward (the paper's choice); last, the last step's;
    sum, the total reward, which is the last q-value and the outcome reward r(y); mean.
    probability (P(+) per step: Math-Shepherd-style PRMs, step-tag scorers): min (the paper's choice for step
    scorers), last (an ORM's score), prod (every step right, if independent), mean; every score stays a
    probability.
    logit (a sequence-classification reward model's value at each step's end): last (its model card's score),
    min, mean.
    E.g. [0.5, -1.0, 2.0] as log-ratios: min -1.0, last 2.0, sum 1.5, mean 0.5.
    """
    if scale == "log_ratio":
        return {"min": min(values), "last": values[-1], "sum": sum(values), "mean": sum(values) / len(values)}
    if scale == "probability":
        return {"min": min(values), "last": values[-1], "prod": float(np.prod(values)),
                "mean": sum(values) / len(values)}
    if scale == "logit":
        return {"last": values[-1], "min": min(values), "mean": sum(values) / len(values)}
    raise ValueError(f"unknown scale {scale!r}; one of log_ratio, probability, logit")


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """How well a score ranks responses: the probability that a random correct response outscores a random
    incorrect one (ties count 1/2); used by the evaluations and by evaluation during training.

    Computed from average ranks (Mann-Whitney U). None when one class is empty.
    """
    pos = sum(1 for l in labels if l == 1)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over runs of tied scores
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, l in zip(ranks, labels) if l == 1)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
