"""Evaluation problem sets: the shared GSM8K / MATH / MATH500 files via $IMPLICIT_PRM_DATA, local JSONL, and errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from implicit_prm.core.errors import InputError, UserError
from implicit_prm.data.benchmarks import Problem, load_gsm8k, load_math, load_math500, load_problems

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "gsm8k").is_dir(), reason=f"shared data not at {SHARED}")


@pytest.fixture
def shared_env(monkeypatch):
    monkeypatch.setenv("IMPLICIT_PRM_DATA", str(SHARED))
    return SHARED


def _first(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.loads(f.readline())


@needs_shared
def test_gsm8k_test(shared_env):
    probs = load_problems("gsm8k:test")
    assert len(probs) == 1319
    first = _first(SHARED / "gsm8k" / "test.jsonl")
    assert probs[0].answer == first["answer"].split("####")[-1].strip() == "18"
    assert probs[0].question == first["question"]
    assert (probs[0].id, probs[0].source) == ("gsm8k/test/0", "gsm8k")
    assert probs[0].meta["solution"] == first["answer"]
    assert len({p.id for p in probs}) == 1319
    assert load_gsm8k("test")[5] == probs[5]


@needs_shared
def test_math500(shared_env):
    probs = load_problems("math500")
    assert len(probs) == 500
    assert all(p.answer.strip() and p.question.strip() for p in probs)
    first = _first(SHARED / "math500" / "MATH500.jsonl")
    assert probs[0].answer == first["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert (probs[0].id, probs[0].source) == ("test/precalculus/807.json", "math500")
    assert probs[0].meta["subject"] == "Precalculus" and probs[0].meta["level"] == 2


@needs_shared
def test_math_test_gold_from_last_boxed(shared_env):
    probs = load_math("test")
    assert len(probs) == 5000
    by_id = {p.id: p for p in probs}
    assert by_id["test/algebra/1.json"].answer == "2"
    assert by_id["test/algebra/2.json"].answer == "\\frac{1}{2}"  # nested braces kept whole
    assert by_id["test/algebra/32.json"].answer == "7,9,12,13"
    assert by_id["test/algebra/1.json"].meta["level"] == "Level 3"
    # the boxed extraction reproduces MATH500's own answer field for all 500 shared problems
    m500 = load_math500("math500")
    assert [by_id[p.id].answer for p in m500] == [p.answer for p in m500]


@needs_shared
def test_local_files_are_detected_by_fields(monkeypatch):
    monkeypatch.delenv("IMPLICIT_PRM_DATA", raising=False)
    gsm = load_problems(str(SHARED / "gsm8k" / "test.jsonl"))
    assert len(gsm) == 1319 and gsm[0].source == "gsm8k" and gsm[0].answer == "18"
    m500 = load_problems(str(SHARED / "math500" / "MATH500.jsonl"))
    assert len(m500) == 500 and m500[0].source == "math500"
    assert load_math500(str(SHARED / "math500" / "MATH500.jsonl"))[0] == m500[0]


def test_generic_jsonl(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"question": "1+1?", "answer": 2},
        {"prompt": "Name it.", "answer": "\\text{Evelyn}", "id": "q7", "topic": "names"},
        {"problem": "Half?", "answer": "\\frac12"},
    ]) + "\n\n", encoding="utf-8")
    probs = load_problems(str(path))
    assert probs == [
        Problem("mine/0", "1+1?", "2", "mine", {}),
        Problem("q7", "Name it.", "\\text{Evelyn}", "mine", {"topic": "names"}),
        Problem("mine/2", "Half?", "\\frac12", "mine", {}),
    ]


def test_gsm8k_and_math_local_files(tmp_path):
    gsm = tmp_path / "g.jsonl"
    gsm.write_text(json.dumps({"question": "q", "answer": "6 * 7 = 42\n#### 1,042"}) + "\n", encoding="utf-8")
    assert load_gsm8k(str(gsm))[0].answer == "1,042"
    math = tmp_path / "m.jsonl"
    math.write_text(json.dumps({"problem": "p", "solution": "$\\boxed{1}$, no: $\\boxed{\\sqrt{2}}$"}) + "\n")
    assert load_problems(str(math))[0] == Problem("math/m/0", "p", "\\sqrt{2}", "math", {"solution": "$\\boxed{1}$, no: $\\boxed{\\sqrt{2}}$"})


@pytest.mark.parametrize("records,loader,line,field", [
    ([{"question": "a", "answer": "1"}, {"question": "b"}], load_problems, 2, "answer"),
    ([{"answer": "1"}], load_problems, 1, "problem"),
    ([{"question": "a", "answer": "  "}], load_problems, 1, "answer"),
    ([{"question": "a", "answer": "5\n#### 5"}, {"question": "b", "answer": "no final line"}], load_gsm8k, 2, "answer"),
    ([{"problem": "a", "solution": "it is 5"}], load_math, 1, "solution"),
    ([{"problem": "a", "solution": "\\boxed{1}"}, {"solution": "\\boxed{2}"}], load_problems, 2, "problem"),
])
def test_malformed_records_name_file_line_field(tmp_path, records, loader, line, field):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(InputError) as e:
        loader(str(path))
    assert (e.value.path, e.value.line, e.value.field) == (str(path), line, field)


def test_bad_specs(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="neither an existing file nor a known dataset name"):
        load_problems("gsm8k:dev")
    with pytest.raises(InputError, match="file not found"):
        load_gsm8k(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no records"):
        load_problems(str(empty))
    monkeypatch.setenv("IMPLICIT_PRM_DATA", str(tmp_path))
    with pytest.raises(UserError, match="math:test not found under"):
        load_problems("math:test")


@pytest.mark.parametrize("spec", ["gsm8k:test", "math:train", "math500"])
def test_hub_names_without_datasets_package(monkeypatch, spec):
    monkeypatch.delenv("IMPLICIT_PRM_DATA", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # as here: the package is not installed
    with pytest.raises(UserError, match="pip install datasets") as e:
        load_problems(spec)
    assert "network" in str(e.value) and "IMPLICIT_PRM_DATA" in str(e.value)
