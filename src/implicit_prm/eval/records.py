"""Reading scored records: their correctness label, answer, score methods and per-step numbers, each one checked."""
from __future__ import annotations

import math
import re

from ..data.formats import describe_json, parse_label
from ..errors import InputError

CORRECT_FIELDS = ("correct", "correctness", "label")
PRESPLIT_CORRECT_FIELDS = ("correct", "final_answer_correct", "correctness")  # `label` = first wrong step there
ANSWER_RE = re.compile(r"The answer is\s+(-?\d+(?:\.\d+)?)\.?\s*$")  # the built-in data's last sentence


def finite_number(path, line, field_name: str, value) -> float:
    """A JSON number that is not NaN or infinite, else InputError naming the field."""
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise InputError(path, line, field_name, f"expected a finite number, found {describe_json(value)}")
    return number


def number_list(path, line, key: str, value, hint: str = "") -> list[float]:
    """A non-empty list of finite numbers (a record's `key`), else InputError naming the field; `hint` ends the
    message when the value is not such a list."""
    if not isinstance(value, list) or not value:
        raise InputError(path, line, key, f"expected a non-empty list of numbers, found {describe_json(value)}{hint}")
    return [finite_number(path, line, f"{key}[{i}]", x) for i, x in enumerate(value)]


def is_presplit(rec: dict) -> bool:
    """A pre-split (ProcessBench) record: `steps` and no `response`, as `data.formats.read_samples` detects it."""
    return "steps" in rec and "response" not in rec and "completions" not in rec


def outcome_label(path, line, rec: dict) -> tuple[str, int] | None:
    """(field, 1/0) of the record's correctness, or None when it has none; InputError for a malformed value."""
    fields = PRESPLIT_CORRECT_FIELDS if is_presplit(rec) else CORRECT_FIELDS
    key = next((k for k in fields if rec.get(k) is not None), None)
    return None if key is None else (key, parse_label(path, line, key, rec[key]))


def score_leaves(path, line, scores, name: str) -> dict[str, float]:
    """{method: score} from flat {agg: x} (method name.agg) or nested {source: {agg: x}} (method source.agg)."""
    if not isinstance(scores, dict) or not scores:
        raise InputError(path, line, "scores", f"expected an object of scores, found {describe_json(scores)}")
    out = {}
    for key, value in scores.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for agg, x in items:
            if agg is None:
                method, where = f"{name}.{key}", f"scores.{key}"
            else:
                method, where = f"{key}.{agg}", f"scores.{key}.{agg}"
            if method in out:
                raise InputError(path, line, where, f"score method '{method}' appears twice")
            out[method] = finite_number(path, line, where, x)
    return out


def read_scores(path, line, rec: dict, name: str, first: tuple[int, list[str]] | None) -> dict[str, float]:
    """The record's {method: score} (score_leaves); InputError when `scores` is missing or its methods differ from
    those of the first record, `first` = (line, methods) (None: this is the first record)."""
    if "scores" not in rec:
        raise InputError(path, line, "scores", "missing; score the responses first (`implicit-prm score`)")
    scores = score_leaves(path, line, rec["scores"], name)
    if first is not None and set(scores) != set(first[1]):
        missing, extra = sorted(set(first[1]) - set(scores)), sorted(set(scores) - set(first[1]))
        what = "; ".join(s for s in (f"lacks {missing}" if missing else "", f"adds {extra}" if extra else "") if s)
        raise InputError(path, line, "scores", f"score methods differ from line {first[0]}'s: this record {what}")
    return scores


def record_answer(path, line, rec: dict) -> str | None:
    """The record's final answer as a stripped string: `extracted_answer`, else `answer_pred`, else the N of the
    built-in data's closing "The answer is N." (ANSWER_RE); None when it has none."""
    for key in ("extracted_answer", "answer_pred"):
        if key in rec:
            a = rec[key]
            if a is not None and (isinstance(a, bool) or not isinstance(a, (str, int, float))):
                raise InputError(path, line, key, f"expected a string or null, found {describe_json(a)}")
            return None if a is None or not str(a).strip() else str(a).strip()
    m = ANSWER_RE.search(rec["response"]) if isinstance(rec.get("response"), str) else None
    return m.group(1) if m else None
