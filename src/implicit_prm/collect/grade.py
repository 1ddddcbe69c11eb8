"""`implicit-prm grade`: label responses by their final answer (data/grading.py) and write the graded file."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import field
from ..core.errors import InputError
from ..core.io import read_json_records, write_jsonl
from ..core.results import write_result
from ..data.grading import grade, reference_answer, summarize


@dataclasses.dataclass
class GradeConfig:
    """Grade a JSONL of model responses against reference answers."""

    input: str = field(help="JSONL (or JSON array) of records holding a response and a reference answer")
    output: str = field(help="where to write the records with extracted_answer, correct and grade_status added")
    reference_field: str = field("answer", help="field with the gold: a bare answer, a GSM8K answer "
                                                "('... #### 42') or a MATH solution (its last \\boxed{})")
    response_field: str = field("response", help="field with the model's response")
    style: Literal["auto", "boxed", "gsm8k", "last_number"] = field(
        "auto", help="answer extraction rule for responses: auto tries boxed, 'the answer is', '####', last number")
    timeout_s: float = field(5.0, help="seconds math-verify may spend on one comparison before it counts as an error")


def grade_file(cfg: GradeConfig) -> dict:
    """Grade every record of cfg.input, write them to cfg.output (atomically) with the config beside it.

    Every record is checked before anything is written: a missing or non-string response or reference field
    raises InputError naming the file, line and field, and leaves no output. Returns and prints the summary.
    """
    todo = []
    for line, rec in read_json_records(cfg.input):
        for name in (cfg.response_field, cfg.reference_field):
            if name not in rec or rec[name] is None:
                raise InputError(cfg.input, line, name, "missing")
        response, reference = rec[cfg.response_field], rec[cfg.reference_field]
        if not isinstance(response, str):
            raise InputError(cfg.input, line, cfg.response_field, f"expected a string, got {type(response).__name__}")
        if isinstance(reference, bool) or not isinstance(reference, (str, int, float)):
            raise InputError(cfg.input, line, cfg.reference_field,
                             f"expected a string or number, got {type(reference).__name__}")
        gold = reference_answer(str(reference))
        if not gold:
            raise InputError(cfg.input, line, cfg.reference_field, f"no gold answer found in {str(reference)[-80:]!r}")
        todo.append((rec, response, gold))

    grades, out = [], []
    for rec, response, gold in todo:
        g = grade(response, gold, cfg.style, cfg.timeout_s)
        grades.append(g)
        out.append({**rec, "extracted_answer": g.extracted, "correct": g.correct, "grade_status": g.status})
    write_result(cfg.output, out, cfg, write=write_jsonl)
    summary = summarize(grades)
    print(f"graded {summary['n']}: {summary['n_correct']} correct, {summary['n_no_answer']} without an answer, "
          f"{summary['n_error']} grading errors -> {cfg.output}")
    return summary
