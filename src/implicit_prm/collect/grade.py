"""`implicit-prm grade`: label responses by their final answer (data/grading.py) and write the graded file."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import write_jsonl
from ..core.results import write_result
from ..data.formats import map_columns
from ..data.grading import grade, reference_answer, summarize
from ..data.settings import InputSettings
from ..data.sources import input_records


@dataclasses.dataclass
class GradeConfig(InputSettings):
    """Grade model responses against reference answers: flat records ({prompt, response}), rollouts ({prompt,
    completions}) and TRL's unpaired records ({prompt, completion}), in any input form."""

    input: str = field(help="records holding responses and a reference answer: JSONL/JSON(.gz), parquet, a datasets "
                            "folder or hf:OWNER/NAME; flat, rollouts or trl-unpaired")
    output: str = field(help="the records with the grades added: correct (flat), correctness (rollouts: one per "
                             "completion) or label (trl-unpaired), with extracted answers and grade status")
    reference_field: str = field("answer", help="field with the gold ('reference' is used when it is absent): a bare "
                                                "answer, a GSM8K answer ('... #### 42') or a MATH solution (its last "
                                                "\\boxed{})")
    response_field: str = field("response", help="flat records: field with the model's response")
    style: Literal["auto", "boxed", "gsm8k", "last_number"] = field(
        "auto", help="answer extraction rule for responses: auto tries boxed, 'the answer is', '####', last number")
    timeout_s: float = field(5.0, help="seconds math-verify may spend on one comparison before it counts as an error")


GRADED_FORMATS = ("rollouts", "flat", "trl-unpaired")


def _shape(cfg: GradeConfig, line, rec: dict) -> str:
    if cfg.input_format != "auto":
        if cfg.input_format not in GRADED_FORMATS:
            raise ConfigError(f"field 'input_format': grade reads {', '.join(GRADED_FORMATS)}, not {cfg.input_format}")
        return cfg.input_format
    if isinstance(rec.get("completions"), list):
        return "rollouts"
    if cfg.response_field in rec:
        return "flat"
    if "completion" in rec:
        return "trl-unpaired"
    raise InputError(cfg.input, line, cfg.response_field, "missing: a flat record's response (or give 'completions' "
                     "for rollouts, 'completion' for TRL unpaired records)")


def _gold(cfg: GradeConfig, line, rec: dict) -> str:
    name = cfg.reference_field if rec.get(cfg.reference_field) is not None or "reference" not in rec else "reference"
    reference = rec.get(name)
    if reference is None:
        raise InputError(cfg.input, line, name, "missing")
    if isinstance(reference, bool) or not isinstance(reference, (str, int, float)):
        raise InputError(cfg.input, line, name, f"expected a string or number, got {type(reference).__name__}")
    gold = reference_answer(str(reference))
    if not gold:
        raise InputError(cfg.input, line, name, f"no gold answer found in {str(reference)[-80:]!r}")
    return gold


def _responses(cfg: GradeConfig, line, rec: dict, shape: str) -> list[str]:
    field_name = {"rollouts": "completions", "flat": cfg.response_field, "trl-unpaired": "completion"}[shape]
    value = rec.get(field_name)
    values = value if shape == "rollouts" else [value]
    if value is None or (shape == "rollouts" and not value):
        raise InputError(cfg.input, line, field_name, "missing")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            where = f"{field_name}[{i}]" if shape == "rollouts" else field_name
            raise InputError(cfg.input, line, where, f"expected a string, got {type(v).__name__}")
    return values


def _graded(rec: dict, shape: str, grades: list) -> dict:
    if shape == "rollouts":
        return {**rec, "correctness": [g.correct for g in grades], "extracted_answers": [g.extracted for g in grades],
                "grade_status": [g.status for g in grades]}
    g = grades[0]
    key = "label" if shape == "trl-unpaired" else "correct"
    return {**rec, key: g.correct, "extracted_answer": g.extracted, "grade_status": g.status}


def grade_file(cfg: GradeConfig) -> dict:
    """Grade every record of cfg.input, write them to cfg.output (atomically) with the config beside it.

    Every record is checked before anything is written: a missing or non-string response or reference field
    raises InputError naming the file, line (or row) and field, and leaves no output. Returns and prints the
    summary (over every graded response).
    """
    todo = []
    for line, rec in input_records(cfg.input):
        rec = map_columns(rec, cfg.column_map)
        shape = _shape(cfg, line, rec)
        todo.append((rec, shape, _responses(cfg, line, rec, shape), _gold(cfg, line, rec)))
    every, out = [], []
    for rec, shape, responses, gold in todo:
        grades = [grade(r, gold, cfg.style, cfg.timeout_s) for r in responses]
        every += grades
        out.append(_graded(rec, shape, grades))
    write_result(cfg.output, out, cfg, write=write_jsonl)
    summary = summarize(every)
    print(f"graded {summary['n']}: {summary['n_correct']} correct, {summary['n_no_answer']} without an answer, "
          f"{summary['n_error']} grading errors -> {cfg.output}")
    return summary
