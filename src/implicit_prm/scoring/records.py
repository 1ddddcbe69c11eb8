"""Reading scored records: their correctness label, answer, score methods and per-step numbers, each one checked."""
from __future__ import annotations

import json
import math

from ..core.errors import InputError
from ..core.results import config_path
from ..core.validation import describe_json
from ..data.formats import parse_label
from ..data.grading import extract_answer
from .schema import record_scale

CORRECT_FIELDS = ("correct", "correctness", "label")
PRESPLIT_CORRECT_FIELDS = ("correct", "final_answer_correct", "correctness")  # `label` = first wrong step there


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


def score_scales(rec: dict, methods, name: str) -> dict[str, str]:
    """{method: 'log_ratio' | 'probability'} from the record's reward_schema (schema.py). Flat scores (method
    name.agg) take the record's schema; nested ones (source.agg, merged files) take reward_schema[source] when the
    schema is nested per source, else the record's."""

    schema = rec.get("reward_schema")
    nested = isinstance(schema, dict) and "name" not in schema
    out = {}
    for m in methods:
        source = m.split(".", 1)[0]
        sub = schema.get(source) if nested else None
        out[m] = record_scale({"reward_schema": sub} if nested else rec)
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


def response_text(rec: dict, separator: str = "\n\n") -> str | None:
    """The record's response: `response`, or a pre-split record's `steps` joined by `separator`; None when it has
    no such text (other fields are checked by the readers that need them)."""
    if isinstance(rec.get("response"), str):
        return rec["response"]
    steps = rec.get("steps")
    if is_presplit(rec) and isinstance(steps, list) and all(isinstance(x, str) for x in steps):
        return separator.join(steps)
    return None


def record_answer(path, line, rec: dict, separator: str = "\n\n") -> tuple[str | None, bool]:
    """(answer, extracted): the record's final answer as a stripped string, and whether it was read from the text.

    `extracted_answer`, else `answer_pred` (when present, non-null and not blank); else the grader's extraction
    (`grading.extract_answer`, style "auto": last \\boxed{}, "The answer is X" / "Answer: X", "#### N", last
    number) from the response (pre-split: the steps joined by `separator`); (None, False) when nothing is found.
    """
    for key in ("extracted_answer", "answer_pred"):
        a = rec.get(key)
        if a is not None and (isinstance(a, bool) or not isinstance(a, (str, int, float))):
            raise InputError(path, line, key, f"expected a string or null, found {describe_json(a)}")
        if a is not None and str(a).strip():
            return str(a).strip(), False
    text = response_text(rec, separator)
    a = extract_answer(text) if text is not None else None
    return (a.strip(), True) if a is not None and a.strip() else (None, False)






def scoring_separator(path) -> str:
    """The step separator `implicit-prm score` joined pre-split steps with: `step_separator` in the config it saved
    beside the scored file (<file>.config.json), else the default "\\n\\n"."""
    try:
        sep = json.loads(config_path(path).read_text(encoding="utf-8")).get("step_separator")
    except (OSError, ValueError, AttributeError):  # no config, unreadable, or not a JSON object
        sep = None
    return sep if isinstance(sep, str) else "\n\n"
