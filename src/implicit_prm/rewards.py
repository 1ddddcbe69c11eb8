"""Implicit process rewards: step spans -> token-to-step map -> token rewards -> step rewards, q-values, scores.

Pure functions of lists and tensors; where the step spans come from is `splitting.py`.

Following Yuan et al. 2024 (arXiv 2412.01981), with r(y) = beta * log(pi_theta(y) / pi_ref(y)):
  token reward   r_t = beta * (log pi_theta(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))
  step reward    r^k = sum of r_t over the tokens of step k
  q-value        q^k = r^1 + ... + r^k        (the paper's q_theta^t, an outcome-reward-to-go)
The paper scores a response by its lowest step reward (`min`).
"""
from __future__ import annotations

import bisect

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


def aggregate(step_r: list[float]) -> dict[str, float]:
    """Response scores from its step rewards.

    min: lowest step reward (the paper's choice); last: reward of the last step; sum: total reward, which is the
    last q-value and the outcome reward r(y); mean: mean step reward.
    """
    return {"min": min(step_r), "last": step_r[-1], "sum": sum(step_r), "mean": sum(step_r) / len(step_r)}


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def aggregate_probabilities(p: list[float]) -> dict[str, float]:
    """Response scores from per-step probabilities: min (the paper's choice for step scorers), last (an ORM's
    score), prod (every step right, if independent) and mean. Every score stays a probability."""
    return {"min": min(p), "last": p[-1], "prod": float(np.prod(p)), "mean": sum(p) / len(p)}
