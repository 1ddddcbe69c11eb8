"""Evaluation problem sets (GSM8K, MATH, MATH500, any JSONL of problems) loaded as Problems with bare gold answers.

`load_problems(spec)` accepts:
  - a local JSONL/JSON file; its format is told from the first record's fields:
      GSM8K   {question, answer ending in '#### N'}
      MATH    {problem, solution with \\boxed{answer}, level?, type?, unique_id?}
      MATH500 {problem, solution, answer, subject?, level?, unique_id}
      generic {problem | question | prompt, answer, id?}
  - built-in RL tasks: arith:TIER[+TIER...][:train|test] (data/arithmetic.py);
  - a name: gsm8k:train, gsm8k:test, math:train, math:test, math500. With $IMPLICIT_PRM_DATA set, a name is read
    from that folder (gsm8k/{train,test}.jsonl, math/{train,test}.jsonl, math500/MATH500.jsonl, the layout of the
    shared data folder); without it, from the Hugging Face hub (openai/gsm8k "main", EleutherAI/hendrycks_math,
    HuggingFaceH4/MATH-500), which needs `pip install datasets` and network access.
Files are read in place, never copied.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable

from ..core.errors import InputError, UserError
from .arithmetic import arithmetic_problems, is_arithmetic
from .grading import extract_answer
from .sources import DATA_ENV, data_dir, input_records
from .sources import hub_rows as _hub_rows

NAMES = ("gsm8k:train", "gsm8k:test", "math:train", "math:test", "math500")
_FILES = {"gsm8k": ("gsm8k/{split}.jsonl",), "math": ("math/{split}.jsonl",),
          "math500": ("math500/MATH500.jsonl", "math500/test.jsonl")}
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


@dataclasses.dataclass
class Problem:
    """One evaluation problem: `answer` is the bare gold answer (GSM8K's after '####', MATH's last \\boxed{})."""

    id: str
    question: str
    answer: str
    source: str
    meta: dict = dataclasses.field(default_factory=dict)


Records = Iterable[tuple[int, dict]]  # (line number, record)


def _required_text(path, line: int, rec: dict, name: str) -> str:
    """A required non-empty string field (numbers are accepted for answers and turned into strings)."""
    if name not in rec or rec[name] is None:
        raise InputError(path, line, name, "missing")
    value = rec[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, line, name, f"expected a non-empty string, got {value!r}")
    return value


def _gsm8k(path, records: Records, split: str) -> list[Problem]:
    out = []
    for line, rec in records:
        question, solution = _required_text(path, line, rec, "question"), _required_text(path, line, rec, "answer")
        answer = extract_answer(solution, "gsm8k")
        if answer is None:
            raise InputError(path, line, "answer", "expected a GSM8K answer ending in '#### <number>'")
        out.append(Problem(str(rec.get("id", f"gsm8k/{split}/{len(out)}")), question, answer, "gsm8k",
                           {"solution": solution}))
    return out


def _math(path, records: Records, split: str, source: str = "math") -> list[Problem]:
    """MATH records; a record's own `answer` field (MATH500) wins over the last \\boxed{} of its solution."""
    out = []
    for line, rec in records:
        question = _required_text(path, line, rec, "problem")
        if "answer" in rec:
            answer, solution = _required_text(path, line, rec, "answer"), rec.get("solution")
        else:
            solution = _required_text(path, line, rec, "solution")
            answer = extract_answer(solution, "boxed")
            if answer is None:
                raise InputError(path, line, "solution", "no \\boxed{...} final answer in the solution")
        meta = {k: rec[k] for k in ("solution", "level", "type", "subject") if rec.get(k) is not None}
        out.append(Problem(str(rec.get("unique_id", f"{source}/{split}/{len(out)}")), question, answer, source, meta))
    return out


def _generic(path, records: Records, split: str) -> list[Problem]:
    out = []
    for line, rec in records:
        key = next((k for k in ("problem", "question", "prompt") if k in rec), None)
        if key is None:
            raise InputError(path, line, "problem", "missing (expected one of 'problem', 'question', 'prompt')")
        question, answer = _required_text(path, line, rec, key), _required_text(path, line, rec, "answer")
        meta = {k: v for k, v in rec.items() if k not in (key, "answer", "id")}
        out.append(Problem(str(rec.get("id", f"{split}/{len(out)}")), question, answer, split, meta))
    return out


def _math500(path, records: Records, split: str) -> list[Problem]:
    return _math(path, records, split, source="math500")


def _detect(rec: dict) -> Callable[..., list[Problem]]:
    """Which reader fits a record, from its fields (see the module docstring)."""
    if "question" in rec and isinstance(rec.get("answer"), str) and "####" in rec["answer"]:
        return _gsm8k
    if "problem" in rec and "solution" in rec:
        return _math500 if "answer" in rec else _math
    return _generic


def _read(path: str | os.PathLike, reader: Callable[..., list[Problem]] | None, split: str) -> list[Problem]:
    records = list(input_records(path))
    if not records:
        raise InputError(path, None, None, "no records")
    return (reader or _detect(records[0][1]))(path, records, split)


# ---------------------------------------------------------------------------------------------------- sources


def _local_file(dataset: str, split: str) -> Path:
    root = data_dir()
    candidates = [root / p.format(split=split) for p in _FILES[dataset]]
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(f"{dataset}:{split} not found under ${DATA_ENV}={root} (looked for {candidates[0]})")


def _split_or_path(arg: str, dataset: str) -> tuple[Path | None, str]:
    """('train'|'test') -> (local file or None for the hub, split); anything else is a file path."""
    if arg in ("train", "test"):
        return (_local_file(dataset, arg) if data_dir() else None), arg
    path = Path(arg)
    if not path.is_file():
        raise InputError(path, None, None, "file not found (or give a split: train, test)")
    return path, path.stem


def load_gsm8k(split_or_path: str = "test") -> list[Problem]:
    """GSM8K: 'train' / 'test' ($IMPLICIT_PRM_DATA, else hub openai/gsm8k 'main') or a JSONL of {question, answer}."""
    path, split = _split_or_path(split_or_path, "gsm8k")
    if path is None:
        return _gsm8k(f"hf://openai/gsm8k/{split}", _hub_rows("openai/gsm8k", "main", split), split)
    return _read(path, _gsm8k, split)


def load_math(split_or_path: str = "test") -> list[Problem]:
    """Hendrycks MATH: 'train' / 'test' ($IMPLICIT_PRM_DATA, else hub EleutherAI/hendrycks_math, all seven
    subjects) or a JSONL of {problem, solution, ...}; the answer is the solution's last \\boxed{}."""
    path, split = _split_or_path(split_or_path, "math")
    if path is not None:
        return _read(path, _math, split)
    out = []
    for subject in MATH_SUBJECTS:
        rows = _hub_rows("EleutherAI/hendrycks_math", subject, split)
        out += _math(f"hf://EleutherAI/hendrycks_math/{subject}/{split}", rows, f"{split}/{subject}")
    return out


def load_math500(path_or_name: str = "math500") -> list[Problem]:
    """MATH500: 'math500' ($IMPLICIT_PRM_DATA, else hub HuggingFaceH4/MATH-500) or a JSONL of {problem, answer, ...}."""
    if path_or_name in ("math500", "math500:test"):
        if data_dir():
            return _read(_local_file("math500", "test"), _math500, "test")
        return _math500("hf://HuggingFaceH4/MATH-500/test", _hub_rows("HuggingFaceH4/MATH-500", None, "test"), "test")
    path = Path(path_or_name)
    if not path.is_file():
        raise InputError(path, None, None, "file not found (or give the name 'math500')")
    return _read(path, _math500, path.stem)


def load_problems(spec: str) -> list[Problem]:
    """Problems from a local file (format told by its fields) or a name (see the module docstring)."""
    path = Path(spec)
    head, at, _ = spec.rpartition("@")
    if path.is_file() or path.is_dir() or spec.startswith("hf:") or (at and Path(head).is_dir()):
        return _read(spec, None, path.stem)  # any input form: JSONL(.gz), parquet, a datasets folder, hf:NAME
    name, _, split = spec.partition(":")
    if spec in ("math500", "math500:test"):
        return load_math500(spec)
    if is_arithmetic(spec):
        return [Problem(r["id"], r["question"], r["answer"], f"arith:{r['tier']}", {"tier": r["tier"]})
                for r in arithmetic_problems(spec)]
    if name in ("gsm8k", "math") and split in ("train", "test"):
        return (load_gsm8k if name == "gsm8k" else load_math)(split)
    raise UserError(f"'{spec}' is neither an existing file nor a known dataset name ({', '.join(NAMES)}, "
                    "arith:TIER[+TIER...][:train|test])")
