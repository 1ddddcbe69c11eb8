"""Read the JSONL input formats (rollouts, flat, pre-split; Math-Shepherd and PRM800K via step_formats) into one flat,
validated list of Samples, with optional per-step labels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from ..core.errors import InputError
from ..core.validation import _encodable, describe_json
from . import step_formats, trl_formats
from .sources import input_records, source_name

SHAPES = (
    "expected one of: "
    '(1) rollouts {"prompt": str, "completions": [str], "correctness": [bool]}; '
    '(2) flat {"prompt": str, "response": str, "label": 0|1}; '
    '(3) pre-split {"problem" or "prompt": str, "steps": [str], "final_answer_correct": bool}; '
    'Math-Shepherd {"input": str with a step tag "ки" after each step, "label": str}; '
    'PRM800K {"question": {"problem": str}, "label": {"steps": [...], "finish_reason": str}}; '
    'PRMBench {"modified_question": str, "modified_process": [str], "error_steps": [int], "classification": str}; '
    'TRL stepwise {"prompt", "completions": [step], "labels": [bool]}; TRL preference {"prompt", "chosen", '
    '"rejected"}; TRL unpaired {"prompt", "completion", "label": bool}; OpenRLHF PRM {"input": str with a step '
    'tag after each step, "label": [+|-|number]}'
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
    # a preference record's chosen and rejected share its index here and pair only with each other (None: pairs
    # are every correct x incorrect response of the same prompt)
    pair: int | None = None

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


def _rollouts(path, line, rec: dict, require_label: bool, sep: str = "\n\n") -> list[Row]:
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
    steps = _completion_steps(path, line, rec, n)
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
        out.append((prompt, sep.join(steps[i]), label, list(steps[i]), record, steps_y) if steps
                   else (prompt, response, label, None, record, steps_y))
    return out


def _completion_steps(path, line, rec: dict, n: int) -> list[list[str]] | None:
    """The paper's rollout schema (Windy0822/ultrainteract_math_rollout) gives each completion's pre-split steps
    in `steps` (one list per completion); they are used as the completion's steps."""
    if rec.get("steps") is None:
        return None
    value = rec["steps"]
    if not isinstance(value, list) or len(value) != n:
        raise InputError(path, line, "steps", f"expected one list of steps per completion ({n}), found "
                                              f"{describe_json(value)}")
    return [_text_list(path, line, {f"steps[{i}]": v}, f"steps[{i}]") for i, v in enumerate(value)]


def _flat(path, line, rec: dict, require_label: bool) -> list[Row]:
    """Format 2: one sample; `label` is the outcome (null or absent = unknown); optional `step_labels`."""
    prompt = _text(path, line, rec, "prompt")
    response = _text(path, line, rec, "response")
    key = "label" if rec.get("label") is not None else "correct"  # `grade` writes `correct`; `label` wins
    label = None if rec.get(key) is None else parse_label(path, line, key, rec[key])
    if label is None and require_label:
        _need_label(path, line, "label", "'label' (0 or 1) or 'correct' (true/false, as `grade` writes)")
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


INPUT_FORMATS = ("rollouts", "flat", "presplit", "prmbench", "math-shepherd-data", "prm800k", "trl-stepwise",
                 "trl-preference", "trl-unpaired", "openrlhf-prm")


def detect(rec: dict) -> list[str]:
    """Every input format whose fields `rec` has (auto reads a record that fits exactly one)."""
    fits = []
    if "completions" in rec and ("correctness" in rec or "labels" not in rec):
        fits.append("rollouts")
    if "completions" in rec and "labels" in rec:
        fits.append("trl-stepwise")
    if "response" in rec:
        fits.append("flat")
    if "completion" in rec and "prompt" in rec:
        fits.append("trl-unpaired")
    if "chosen" in rec and "rejected" in rec:
        fits.append("trl-preference")
    if "steps" in rec and not {"completions", "response"} & set(rec):
        fits.append("presplit")
    if "modified_process" in rec:
        fits.append("prmbench")
    if step_formats.is_math_shepherd(rec):
        fits.append("math-shepherd-data")
    if isinstance(rec.get("input"), str) and isinstance(rec.get("label"), list):
        fits.append("openrlhf-prm")
    if step_formats.is_prm800k(rec):
        fits.append("prm800k")
    return fits


def _rows(fmt: str, path, line, rec: dict, require_label: bool, sep: str, neutral: float,
          step_tag: str | None) -> list[Row]:
    if fmt == "rollouts":
        return _rollouts(path, line, rec, require_label, sep)
    if fmt == "flat":
        return _flat(path, line, rec, require_label)
    if fmt == "presplit":
        return _presplit(path, line, rec, require_label, sep)
    if fmt == "prmbench":
        return _prmbench(path, line, rec, require_label, sep)
    if fmt == "math-shepherd-data":
        return [step_formats.math_shepherd_row(path, line, rec, sep)]
    if fmt == "prm800k":
        return [step_formats.prm800k_row(path, line, rec, sep, neutral)]
    if fmt == "trl-stepwise":
        return [trl_formats.stepwise_row(path, line, rec, sep)]
    if fmt == "trl-preference":
        return trl_formats.preference_rows(path, line, rec)
    if fmt == "trl-unpaired":
        rows = [trl_formats.unpaired_row(path, line, rec)]
        if rows[0][2] is None and require_label:
            _need_label(path, line, "label", "'label' (true/false)")
        return rows
    if fmt == "openrlhf-prm":
        return [trl_formats.openrlhf_row(path, line, rec, sep, step_tag)]
    raise ValueError(f"unknown input format {fmt!r}; one of {', '.join(INPUT_FORMATS)}")


def map_columns(rec: dict, columns: dict[str, str]) -> dict:
    """`rec` with each of its fields named THEIRS renamed to OURS (--columns OURS=THEIRS)."""
    if not columns:
        return rec
    out = dict(rec)
    for ours, theirs in columns.items():
        if theirs in out:
            out[ours] = out.pop(theirs)
    return out


def _record_format(name: str, line, rec: dict, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    fits = detect(rec)
    if len(fits) == 1:
        return fits[0]
    if not fits:
        found = ", ".join(sorted(rec)) or "none"
        raise InputError(name, line, None, f"unrecognised record (fields found: {found}); {SHAPES}; or name the "
                                           "format with --input-format and map fields with --columns OURS=THEIRS")
    raise InputError(name, line, None, f"the record fits more than one input format ({' and '.join(fits)}, from "
                                       f"its fields {', '.join(sorted(rec))}); name one with --input-format")


def read_samples(path, step_separator: str = "\n\n", require_label: bool = False,
                 require_step_labels: bool = False, prm800k_neutral: float = 1.0, input_format: str = "auto",
                 columns: dict[str, str] | None = None, step_tag: str | None = None) -> list[Sample]:
    """Read records of any input format (INPUT_FORMATS) from any input form (data.sources: JSON/JSONL(.gz),
    parquet, a datasets folder, hf:OWNER/NAME, a benchmark name, or a Dataset / list of dicts) into Samples.

    `input_format` 'auto' detects each record by its fields (`detect`) and refuses one that fits two formats;
    `columns` renames fields first (ours -> theirs). `prm800k_neutral` is the label of PRM800K's neutral rating 0;
    `step_tag` the tag of openrlhf-prm inputs. `require_step_labels`: every sample must carry step labels.
    Every problem raises InputError naming the file, the line (or row) and the field.
    """
    if not 0.0 <= prm800k_neutral <= 1.0:
        raise ValueError(f"prm800k_neutral must be in [0, 1], got {prm800k_neutral!r}")
    if input_format not in ("auto",) + INPUT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}; one of auto, {', '.join(INPUT_FORMATS)}")
    name = source_name(path)
    samples: list[Sample] = []
    group = -1
    for group, (line, rec) in enumerate(input_records(path)):
        rec = map_columns(rec, columns or {})
        fmt = _record_format(name, line, rec, input_format)
        rows = _rows(fmt, name, line, rec, require_label, step_separator, prm800k_neutral, step_tag)
        for index, (prompt, response, label, steps, record, steps_y) in enumerate(rows):
            if steps_y is None and require_step_labels:
                raise InputError(name, line, "step_labels", "missing step labels (required here); add 'step_labels' "
                                 "(rollouts: one list per completion; pre-split: one number in [0, 1] per step)")
            samples.append(Sample(prompt, response, label, steps, record, (name, line), group, index,
                                  step_labels=steps_y, pair=group if fmt == "trl-preference" else None))
    if group < 0:
        raise InputError(name, None, None, f"no records found; {SHAPES}")
    return samples


def group_by_prompt(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by prompt text, prompts in order of first appearance, samples in file order."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.prompt, []).append(s)
    return groups
