"""Implicit process rewards: step spans -> token-to-step map -> token rewards -> step rewards, q-values, scores.

Following Yuan et al. 2024 (arXiv 2412.01981), with r(y) = beta * log(pi_theta(y) / pi_ref(y)):
  token reward   r_t = beta * (log pi_theta(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))
  step reward    r^k = sum of r_t over the tokens of step k
  q-value        q^k = r^1 + ... + r^k        (the paper's q_theta^t, an outcome-reward-to-go)
The paper scores a response by its lowest step reward (`min`).
"""
from __future__ import annotations

import bisect
import re

import torch

# The paper's step markers: "Step 1:", "Step 2." at the start of a line.
STEP_MARKER = re.compile(r"(?m)^[ \t]*Step\s*\d+\s*[:.]")
BLANK_LINE = re.compile(r"\r?\n[ \t\r]*\n(?:[ \t\r]*\n)*")  # the next step keeps its indentation
SPLIT_MODES = ("auto", "steps", "markers", "blank", "regex")


def spans_from_starts(starts: list[int], length: int) -> list[tuple[int, int]]:
    """Character spans [start_k, start_{k+1}) covering [0, length); text before the first start joins step 0."""
    starts = sorted(set(s for s in starts if 0 < s < length))
    bounds = [0, *starts, length]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def spans_from_steps(steps: list[str], separator: str) -> list[tuple[int, int]]:
    """Spans of `separator.join(steps)`; the separator after a step belongs to that step."""
    spans, pos = [], 0
    for i, step in enumerate(steps):
        end = pos + len(step) + (len(separator) if i < len(steps) - 1 else 0)
        spans.append((pos, end))
        pos = end
    return spans


def spans_from_separator(text: str, pattern: re.Pattern) -> list[tuple[int, int]]:
    """Split where `pattern` matches; each separator belongs to the step before it."""
    starts = [m.end() for m in pattern.finditer(text) if m.end() < len(text) and m.start() > 0]
    return spans_from_starts(starts, len(text))


def step_spans(response: str, steps: list[str] | None = None, mode: str = "auto", regex: str | None = None,
               separator: str = "\n\n") -> list[tuple[int, int]]:
    """Character spans of the steps of `response`.

    mode: 'steps' uses the given list (response must equal separator.join(steps)); 'markers' starts a step at each
    'Step k:' line; 'blank' splits at blank lines; 'regex' splits where `regex` matches (the match ends a step);
    'auto' = steps if given, else markers if there are at least two, else blank lines.
    """
    if mode == "auto":
        if steps is not None:
            mode = "steps"
        elif len(STEP_MARKER.findall(response)) >= 2:
            mode = "markers"
        else:
            mode = "blank"
    if mode == "steps":
        if steps is None:
            raise ValueError("step split mode 'steps' needs a 'steps' list in the input")
        if separator.join(steps) != response:
            raise ValueError("response is not the steps joined by the step separator")
        return spans_from_steps(steps, separator)
    if mode == "markers":
        starts = [m.start() for m in STEP_MARKER.finditer(response)]
        return spans_from_starts(starts[1:], len(response))  # text before the first marker joins step 0
    if mode == "blank":
        return spans_from_separator(response, BLANK_LINE)
    if mode == "regex":
        if not regex:
            raise ValueError("step split mode 'regex' needs --step-regex")
        return spans_from_separator(response, re.compile(regex))
    raise ValueError(f"unknown step split mode {mode!r}; expected one of {SPLIT_MODES}")


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


AGGREGATIONS = ("min", "last", "sum", "mean")


def aggregate(step_r: list[float]) -> dict[str, float]:
    """Response scores from its step rewards.

    min: lowest step reward (the paper's choice); last: reward of the last step; sum: total reward, which is the
    last q-value and the outcome reward r(y); mean: mean step reward.
    """
    return {"min": min(step_r), "last": step_r[-1], "sum": sum(step_r), "mean": sum(step_r) / len(step_r)}
