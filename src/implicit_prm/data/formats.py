"""Read the JSONL input formats (rollouts, flat, pre-split; Math-Shepherd and PRM800K via step_formats) into one flat,
validated list of Samples, with optional per-step labels."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NoReturn

from ..core.errors import InputError
from ..core.validation import _encodable, describe_json
from . import step_formats
from .sources import input_records

SHAPES = (
    "expected one of: "
    '(1) rollouts {"prompt": str, "completions": [str], "correctness": [bool]}; '
    '(2) flat {"prompt": str, "response": str, "label": 0|1}; '
    '(3) pre-split {"problem" or "prompt": str, "steps": [str], "final_answer_correct": bool}; '
    'Math-Shepherd {"input": str with a step tag "ки" after each step, "label": str}; '
    'PRM800K {"question": {"problem": str}, "label": {"steps": [...], "finish_reason": str}}; '
    'PRMBench {"modified_question": str, "modified_process": [str], "error_steps": [int], "classification": str}'
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
    # one value in [0, 1] per step (1 = the step is right; hard labels 0/1, soft labels fractions), None = unknown.
    # Pre-split formats: len == len(steps), checked here. Rollouts and flat: the steps are known only after
    # splitting, so whoever splits checks the length.
    step_labels: list[float] | None = None

    @classmethod
    def api(cls, prompt: str, response: str, steps: list[str] | None = None, source: tuple[str, int] = ("<api>", 0),
            group: int = 0) -> "Sample":
        """A sample built in code, not read from a file (the Python API, search, the server): no label, no record;
        `source` names it in errors (e.g. ("request", 3))."""
        return cls(prompt, response, None, steps, {}, source, group, 0)




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


def parse_step_labels(path, line, field: str, value, n_steps: int | None = None) -> list[float]:
    """Step labels: a list of numbers in [0, 1] (true/false = 1/0), one per step when n_steps is given."""
    if not isinstance(value, list) or not value:
        raise InputError(path, line, field, f"expected a non-empty list of numbers in [0, 1] (one per step), found "
                                            f"{describe_json(value)}")
    if n_steps is not None and len(value) != n_steps:
        raise InputError(path, line, field, f"has {len(value)} entries but there are {n_steps} steps; expected one "
                                            "per step")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, (bool, int, float)) or not 0.0 <= v <= 1.0:
            raise InputError(path, line, f"{field}[{i}]", f"expected a number in [0, 1] (1 = the step is right) or "
                                                          f"true/false, found {describe_json(v)}")
        out.append(float(v))
    return out


def _need_label(path, line, field: str, how: str) -> NoReturn:
    """The error for a missing outcome label when require_label=True; `how` names every field that could give it."""
    raise InputError(path, line, field, f"missing outcome label (required for training); add {how} to every record")


Row = tuple  # (prompt, response, label, steps | None, record, step_labels | None): one Sample's worth


def _rollouts(path, line, rec: dict, require_label: bool) -> list[Row]:
    """Format 1: one row per completion; equal-length list fields are sliced; `step_labels` holds one list (or null)
    per completion."""
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
    step_labels = [None] * n
    if rec.get("step_labels") is not None:
        if not isinstance(rec["step_labels"], list) or len(rec["step_labels"]) != n:
            raise InputError(path, line, "step_labels", f"expected a list with one entry per completion ({n}), each "
                                                        f"a list of step labels or null, found "
                                                        f"{describe_json(rec['step_labels'])}")
        step_labels = [None if v is None else parse_step_labels(path, line, f"step_labels[{i}]", v)
                       for i, v in enumerate(rec["step_labels"])]
    others = {k: v for k, v in rec.items() if k not in ("prompt", "completions", "correctness")}
    out = []
    for i, (response, label, steps_y) in enumerate(zip(completions, labels, step_labels)):
        record = {"prompt": prompt, "response": response}
        if correctness is not None:
            record["correctness"] = correctness[i]
        record["completion_index"] = i
        for k, v in others.items():
            if k not in record:
                record[k] = v[i] if isinstance(v, list) and len(v) == n else v
        out.append((prompt, response, label, None, record, steps_y))
    return out


def _flat(path, line, rec: dict, require_label: bool) -> list[Row]:
    """Format 2: one sample; `label` is the outcome (null or absent = unknown); optional `step_labels`."""
    prompt = _text(path, line, rec, "prompt")
    response = _text(path, line, rec, "response")
    label = None if rec.get("label") is None else parse_label(path, line, "label", rec["label"])
    if label is None and require_label:
        _need_label(path, line, "label", "'label' (0 or 1)")
    steps_y = None if rec.get("step_labels") is None else parse_step_labels(path, line, "step_labels",
                                                                             rec["step_labels"])
    return [(prompt, response, label, None, rec, steps_y)]


def _presplit(path, line, rec: dict, require_label: bool, sep: str) -> list[Row]:
    """Format 3 (ProcessBench): `label` there is the first wrong step, so the outcome comes from
    `final_answer_correct`, else `correctness`, else it is unknown. Optional `step_labels`, one per step."""
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
    steps_y = None if rec.get("step_labels") is None else parse_step_labels(path, line, "step_labels",
                                                                             rec["step_labels"], len(steps))
    return [(prompt, sep.join(steps), label, list(steps), rec, steps_y)]


def _prmbench(path, line, rec: dict, require_label: bool, sep: str) -> list[Row]:
    """PRMBench (Song et al. 2025, arXiv 2501.03124) as published: the question is `modified_question`, the steps
    `modified_process`; `error_steps` (1-based) and `classification` stay on the record for `eval prmbench`."""
    prompt = _text(path, line, rec, "modified_question")
    steps = _text_list(path, line, rec, "modified_process")
    if require_label:
        raise InputError(path, line, "modified_process", "a PRMBench record has step errors but no outcome label to "
                                                         "train on")
    return [(prompt, sep.join(steps), None, list(steps), rec, None)]


def read_samples(path: str | os.PathLike, step_separator: str = "\n\n", require_label: bool = False,
                 require_step_labels: bool = False, prm800k_neutral: float = 1.0) -> list[Sample]:
    """Read a JSONL (or JSON array) file of any of the input formats, detected per record, into Samples.

    `path` is a file or a benchmark name (`processbench:<split>`: data.sources).
    Detection, first match wins: a `completions` field -> rollouts; `response` -> flat; `steps` -> pre-split;
    `modified_process` -> PRMBench (pre-split, no outcome label);
    string `input` holding the step tag "ки" and string `label` -> Math-Shepherd; `label` an object with `steps` ->
    PRM800K (both pre-split, with step labels; see step_formats; `prm800k_neutral` is the label of PRM800K's neutral
    rating 0). `require_step_labels`: every sample must carry step labels.
    Every problem raises InputError naming the file, the line and the field.
    """

    if not 0.0 <= prm800k_neutral <= 1.0:
        raise ValueError(f"prm800k_neutral must be in [0, 1], got {prm800k_neutral!r}")
    samples: list[Sample] = []
    group = -1
    for group, (line, rec) in enumerate(input_records(path)):
        if "completions" in rec:
            rows = _rollouts(path, line, rec, require_label)
        elif "response" in rec:
            rows = _flat(path, line, rec, require_label)
        elif "steps" in rec:
            rows = _presplit(path, line, rec, require_label, step_separator)
        elif "modified_process" in rec:
            rows = _prmbench(path, line, rec, require_label, step_separator)
        elif step_formats.is_math_shepherd(rec):
            rows = [step_formats.math_shepherd_row(path, line, rec, step_separator)]
        elif step_formats.is_prm800k(rec):
            rows = [step_formats.prm800k_row(path, line, rec, step_separator, prm800k_neutral)]
        else:
            found = ", ".join(sorted(rec)) or "none"
            raise InputError(path, line, None, f"unrecognised record (fields found: {found}); {SHAPES}")
        for index, (prompt, response, label, steps, record, steps_y) in enumerate(rows):
            if steps_y is None and require_step_labels:
                raise InputError(path, line, "step_labels", "missing step labels (required here); add 'step_labels' "
                                 "(rollouts: one list per completion; pre-split: one number in [0, 1] per step)")
            samples.append(Sample(prompt, response, label, steps, record, (str(path), line), group, index,
                                  step_labels=steps_y))
    if group < 0:
        raise InputError(path, None, None, f"no records found; {SHAPES}")
    return samples


def group_by_prompt(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by prompt text, prompts in order of first appearance, samples in file order."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.prompt, []).append(s)
    return groups
