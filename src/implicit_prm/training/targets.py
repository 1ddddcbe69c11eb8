"""Training targets of the step-tag baselines: the label at each read position (step labels or the outcome)."""
from __future__ import annotations

from typing import Sequence

from ..core.errors import InputError
from ..steps.encoding import Encoded


def step_targets(samples, encs: Sequence[Encoded | None], source: str) -> list[list[float] | None]:
    """The label of each read position of each response: its step labels (source "steps"), or its outcome label
    at the prompt's end and after every step ("outcome"). A response whose step labels do not match its steps is
    an InputError naming its file, line and field."""

    out: list[list[float] | None] = []
    for s, e in zip(samples, encs):
        if e is None:
            out.append(None)
            continue
        if source == "outcome":
            out.append([float(s.label)] * (e.n_steps + 1))
            continue
        labels = getattr(s, "step_labels", None)
        path, line = s.source
        if labels is None:
            raise InputError(path, line, "step_labels", "missing; a step-label PRM trains on one label per step "
                             "(make them with `implicit-prm label-mc` or `label-autopsv`)")
        n_all = len(e.spans)
        if len(labels) != n_all:
            raise InputError(path, line, "step_labels", f"has {len(labels)} labels but the response has {n_all} "
                             "steps; expected one per step")
        out.append([float(x) for x in labels[:e.n_steps]])
    return out
