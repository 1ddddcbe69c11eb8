"""Step splitting: where the steps of a response are, as character spans (from a steps list, markers, blank lines
or a regex)."""
from __future__ import annotations

import re

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
            raise ValueError("step split mode 'regex' needs a regex (none was given)")
        return spans_from_separator(response, re.compile(regex))
    raise ValueError(f"unknown step split mode {mode!r}; expected one of {SPLIT_MODES}")
