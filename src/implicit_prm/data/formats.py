"""Read the three JSONL input formats (rollouts, flat, pre-split) into one flat, validated list of Samples."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NoReturn

from ..errors import InputError
from ..io import read_json_records

SHAPES = (
    "expected one of: "
    '(1) rollouts {"prompt": str, "completions": [str], "correctness": [bool]}; '
    '(2) flat {"prompt": str, "response": str, "label": 0|1}; '
    '(3) pre-split {"problem" or "prompt": str, "steps": [str], "final_answer_correct": bool}'
)


@dataclass
class Sample:
    """One response to score or train on, with where it came from."""

    prompt: str
    response: str  # the full response text
    label: int | None  # 1 = final answer correct, 0 = wrong, None = unknown
    steps: list[str] | None  # only for format 3 (pre-split); then response == step_separator.join(steps)
    record: dict  # the input fields for THIS response (the base of the output record when scoring)
    source: tuple[str, int]  # (path, line) for error messages
    group: int  # index of the input record this came from (rollouts: one record -> many samples)
    index: int  # position within its record (completion index; 0 for formats 2 and 3)


def describe_json(value) -> str:
    """A short description of a JSON value for error messages: its JSON type and a preview."""
    kind = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}
    name = "null" if value is None else kind.get(type(value), type(value).__name__)
    preview = repr(value)
    return f"{name} {preview[:40] + '...' if len(preview) > 40 else preview}"


def _text(path, line, rec: dict, field: str) -> str:
    """rec[field] as a non-empty, non-whitespace string, else InputError."""
    if field not in rec:
        raise InputError(path, line, field, "missing; expected a non-empty string")
    value = rec[field]
    if not isinstance(value, str):
        raise InputError(path, line, field, f"expected a string, found {describe_json(value)}")
    if not value.strip():
        raise InputError(path, line, field, "expected non-empty text, found an empty or whitespace-only string")
    _encodable(path, line, field, value)
    return value


def _encodable(path, line, field: str, value: str) -> None:
    """JSON can escape a lone surrogate (\\ud800), which is no character: refuse it before a tokenizer sees it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(path, line, field, f"contains an unpaired surrogate escape (\\u{ord(value[e.start]):04x}) "
                                            "at character " + str(e.start)) from None


def _text_list(path, line, rec: dict, field: str) -> list[str]:
    """rec[field] as a non-empty list of non-empty strings, else InputError naming the bad element."""
    if field not in rec:
        raise InputError(path, line, field, "missing; expected a non-empty list of strings")
    value = rec[field]
    if not isinstance(value, list) or not value:
        raise InputError(path, line, field, f"expected a non-empty list of strings, found {describe_json(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(path, line, f"{field}[{i}]", f"expected a string, found {describe_json(item)}")
        if not item.strip():
            raise InputError(path, line, f"{field}[{i}]",
                             "expected non-empty text, found an empty or whitespace-only string")
        _encodable(path, line, f"{field}[{i}]", item)
    return value


def parse_label(path, line, field: str, value) -> int:
    """An outcome label: true/false or 0/1 -> 1/0, else InputError."""
    if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
        return int(value)
    raise InputError(path, line, field, f"expected true/false or 0/1, found {describe_json(value)}")


def _need_label(path, line, field: str, how: str) -> NoReturn:
    """The error for a missing outcome label when require_label=True; `how` names every field that could give it."""
    raise InputError(path, line, field, f"missing outcome label (required for training); add {how} to every record")


def _rollouts(path, line, rec: dict, require_label: bool) -> list[tuple[str, str, int | None, None, dict]]:
    """Format 1: one (prompt, response, label, steps, record) per completion; equal-length list fields are sliced."""
    prompt = _text(path, line, rec, "prompt")
    completions = _text_list(path, line, rec, "completions")
    n = len(completions)
    correctness = rec.get("correctness")
    if correctness is None:
        if require_label:
            _need_label(path, line, "correctness", "'correctness' (a list of true/false, one per completion)")
    elif not isinstance(correctness, list):
        raise InputError(path, line, "correctness", f"expected a list of true/false, found {describe_json(correctness)}")
    elif len(correctness) != n:
        raise InputError(path, line, "correctness",
                         f"has {len(correctness)} entries but 'completions' has {n}; expected one per completion")
    labels = [None] * n if correctness is None else [
        parse_label(path, line, f"correctness[{i}]", c) for i, c in enumerate(correctness)]
    others = {k: v for k, v in rec.items() if k not in ("prompt", "completions", "correctness")}
    out = []
    for i, (response, label) in enumerate(zip(completions, labels)):
        record = {"prompt": prompt, "response": response}
        if correctness is not None:
            record["correctness"] = correctness[i]
        record["completion_index"] = i
        for k, v in others.items():
            if k not in record:
                record[k] = v[i] if isinstance(v, list) and len(v) == n else v
        out.append((prompt, response, label, None, record))
    return out


def _flat(path, line, rec: dict, require_label: bool) -> list[tuple[str, str, int | None, None, dict]]:
    """Format 2: one sample; `label` is the outcome (null or absent = unknown)."""
    prompt = _text(path, line, rec, "prompt")
    response = _text(path, line, rec, "response")
    label = None if rec.get("label") is None else parse_label(path, line, "label", rec["label"])
    if label is None and require_label:
        _need_label(path, line, "label", "'label' (0 or 1)")
    return [(prompt, response, label, None, rec)]


def _presplit(path, line, rec: dict, require_label: bool, sep: str) -> list[tuple[str, str, int | None, list, dict]]:
    """Format 3 (ProcessBench): `label` there is the first wrong step, so the outcome comes from
    `final_answer_correct`, else `correctness`, else it is unknown."""
    if "problem" not in rec and "prompt" not in rec:
        raise InputError(path, line, "problem", "missing; pre-split records need 'problem' or 'prompt' (a string)")
    prompt = _text(path, line, rec, "problem" if "problem" in rec else "prompt")
    steps = _text_list(path, line, rec, "steps")
    label = None
    for field in ("final_answer_correct", "correctness"):
        if rec.get(field) is not None:
            label = parse_label(path, line, field, rec[field])
            break
    if label is None and require_label:
        _need_label(path, line, "final_answer_correct", "'final_answer_correct' or 'correctness' (true/false)")
    return [(prompt, sep.join(steps), label, list(steps), rec)]


def read_samples(path: str | os.PathLike, step_separator: str = "\n\n", require_label: bool = False) -> list[Sample]:
    """Read a JSONL (or JSON array) file of any of the three formats, detected per record, into Samples.

    Detection, first match wins: a `completions` field -> rollouts; `response` -> flat; `steps` -> pre-split.
    Every problem raises InputError naming the file, the line and the field.
    """
    samples: list[Sample] = []
    group = -1
    for group, (line, rec) in enumerate(read_json_records(path)):
        if "completions" in rec:
            rows = _rollouts(path, line, rec, require_label)
        elif "response" in rec:
            rows = _flat(path, line, rec, require_label)
        elif "steps" in rec:
            rows = _presplit(path, line, rec, require_label, step_separator)
        else:
            found = ", ".join(sorted(rec)) or "none"
            raise InputError(path, line, None, f"unrecognised record (fields found: {found}); {SHAPES}")
        for index, (prompt, response, label, steps, record) in enumerate(rows):
            samples.append(Sample(prompt, response, label, steps, record, (str(path), line), group, index))
    if group < 0:
        raise InputError(path, None, None, f"no records found; {SHAPES}")
    return samples


def group_by_prompt(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by prompt text, prompts in order of first appearance, samples in file order."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.prompt, []).append(s)
    return groups
