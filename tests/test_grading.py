"""Answer grading: extraction rules, math-verify equivalence on tricky GSM8K/MATH answers, failure counting, grade_file."""
from __future__ import annotations

import json
import signal

import pytest

from implicit_prm.collect.grade import GradeConfig, grade_file
from implicit_prm.core.errors import InputError
from implicit_prm.data import grading
from implicit_prm.data.grading import (
    Grade,
    GradingError,
    extract_answer,
    grade,
    is_equivalent,
    normalize_answer,
    reference_answer,
    summarize,
)

# (response, gold, expected_correct): real responses end in one of the forms the extractor knows.
CASES = [
    # --- GSM8K style
    ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18", True),
    ("Total: 1,000 + 234 = 1,234\n#### 1,234", "1234", True),
    ("#### 1234", "1,234", True),
    ("So she pays $1,000 in total.", "1000", True),  # last number, thousands separator
    ("She had 16 eggs, ate 3 and baked 4, leaving 9; at $2 each that is 20 minus 2. The answer is 18.", "18", True),
    ("The answer is $18.00.", "18", True),
    ("The answer is 18 dollars.", "18", True),
    ("Answer: 5 dollars", "5", True),
    ("**Answer:** Verna received $7.00 in change.", "7", True),
    ("The answer is 17.", "18", False),
    ("It dropped to -5 degrees below zero. The answer is -5.", "-5", True),
    ("The answer is 5.", "-5", False),
    ("#### -3", "-3", True),
    ("#### 2", "3", False),
    ("The answer is 50%.", "50", True),
    ("So the share is 0.05 of the total. The answer is 0.05", "0.5", False),
    ("She ends with 3 - 5 + 10 = 8 apples", "8", True),  # '-5' inside an expression is not the answer
    ("so the ratio of red to blue is 3/4", "\\frac{3}{4}", True),
    ("The final answer is: \\boxed{\\15}", "15", True),  # a '$' lost before the number
    # --- MATH style
    ("So $x = \\boxed{\\frac{1}{2}}$.", "0.5", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac12", True),
    ("\\boxed{\\frac12}", "1/2", True),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt2}{2}", True),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),  # nested braces
    ("\\boxed{-\\frac{2\\sqrt{3}}{3}}", "-\\frac{2 \\sqrt{3}}{3}", True),
    ("The range is $\\boxed{(0, 1]}$.", "(0,1]", True),
    ("\\boxed{(0, 1)}", "(0,1]", False),
    ("\\boxed{[2, 5)}", "[2,5)", True),
    ("\\boxed{[2, 5]}", "[2,5)", False),
    ("\\boxed{x=3}", "3", True),
    ("\\boxed{3}", "x = 3", True),
    ("\\boxed{90^\\circ}", "90", True),
    ("\\boxed{90}", "90^\\circ", True),
    ("\\boxed{5\\text{ cm}}", "5", True),
    ("\\boxed{8\\sqrt{3}}", "8\\sqrt{3} \\text { square inches}", True),
    ("\\boxed{50\\%}", "50", True),
    ("First I got \\boxed{3}, but rechecking, the answer is \\boxed{4}.", "4", True),  # last box wins
    ("First I got \\boxed{3}, but rechecking, the answer is \\boxed{4}.", "3", False),
    ("\\boxed{\\{1, 2\\}}", "\\{2,1\\}", True),
    ("\\boxed{(1, 2)}", "(2, 1)", False),
    ("\\boxed{0.33}", "\\frac{1}{3}", False),
    ("\\boxed{0.05}", "0.5", False),
    ("\\boxed{2}", "3", False),
    ("\\boxed{-5}", "5", False),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
    ("\\fbox{7}", "7", True),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3, \\frac{\\pi}{2})", True),
    ("Final Answer: The final answer is $\\frac{8\\pi}{5}$. I hope it is correct.", "\\tfrac{8\\pi}5", True),
    ("\\boxed{\\begin{pmatrix}0&1\\\\1&0\\end{pmatrix}}", "\\begin{pmatrix} 0 & 1 \\\\ 1 & 0 \\end{pmatrix}", True),
    ("\\boxed{10.5\\pi}", "\\frac{21}{2}\\pi", True),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
    ("\\boxed{1,000}", "1000", True),
    # verify(gold, pred) is not symmetric: an interval answers an inequality gold, not the other way round
    ("\\boxed{(-\\infty, 3)}", "x < 3", True),
    ("\\boxed{x<3}", "(-\\infty,3)", False),
    ("\\boxed{3} and later a cut-off \\boxed{\\frac{1}{", "3", True),  # an unclosed last box is skipped
]


def test_table_is_big_and_mixed():
    assert len(CASES) >= 40
    assert sum(c for _, _, c in CASES) >= 10 and sum(not c for _, _, c in CASES) >= 10


@pytest.mark.parametrize("response,gold,expected", CASES)
def test_grade_table(response, gold, expected):
    g = grade(response, gold)
    assert g.status == "ok", g
    assert g.correct is expected, g


# ---------------------------------------------------------------------------------------------------- extraction


def test_boxed_rule():
    assert extract_answer("x is \\boxed{\\frac{1}{2}} ok") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{1} then \\fbox{2}") == "2"
    assert extract_answer("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"  # escaped braces do not close the box
    assert extract_answer("\\boxed{} no number", "boxed") is None  # an empty box is no answer
    assert extract_answer("The answer is 5", "boxed") is None
    assert extract_answer("\\boxed{\\frac{1}{", "boxed") is None


def test_answer_is_rule():
    assert extract_answer("So... The answer is $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_answer("the final answer is \\(x^2\\)") == "x^2"
    assert extract_answer("Answer: 42.\nThanks") == "42"
    assert extract_answer("The answer is 7. Wait. The answer is 3.5.") == "3.5"  # last one; decimal kept
    assert extract_answer("The answer is 18 apples. She had 20 before.") == "18"
    assert extract_answer("Final Answer: The final answer is 5. I hope it is correct.") == "5"
    assert extract_answer("The answer is $\\boxed{12}$") == "12"  # boxed wins anyway


def test_gsm8k_rule():
    assert extract_answer("a <<2*3=6>>6\n#### 1,234") == "1,234"
    assert extract_answer("#### 7\n#### 8") == "8"
    assert extract_answer("\\boxed{3}\n#### 5", "gsm8k") == "5"
    assert extract_answer("The answer is 4", "gsm8k") is None


@pytest.mark.parametrize("text,expected", [
    ("it costs $1,000 in all", "1,000"), ("down to -3 now", "-3"), ("3-5", "5"), ("about 2.5.", "2.5"),
    ("so 3/4 of them", "3/4"), ("x(-2) gives -4, then 12", "12"), ("pay $5.", "5"), ("no digits here", None),
    ("values 1,2,3", "3"), ("(a)-7", "7"),
])
def test_last_number_rule(text, expected):
    assert extract_answer(text, "last_number") == expected


def test_auto_rule_order():
    text = "I think 1. Answer: 2\n#### 3\n\\boxed{4} and 5"
    assert extract_answer(text) == "4"
    assert extract_answer(text.replace("\\boxed{4}", "")) == "2"
    assert extract_answer("I think 1.\n#### 3\nthen 5") == "3"
    assert extract_answer("I think 1 then 5") == "5"
    assert extract_answer("no answer here") is None
    with pytest.raises(ValueError, match="unknown extraction style"):
        extract_answer("1", "latest")


def test_reference_answer():
    assert reference_answer("She has 6 + 36 = <<6+36=42>>42.\n#### 42") == "42"
    assert reference_answer("so it is $\\boxed{\\frac{2}{3}}$ chance.") == "\\frac{2}{3}"
    assert reference_answer("\\left( 3, \\frac{\\pi}{2} \\right)") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert reference_answer("####") == ""


def test_normalize_answer():
    assert normalize_answer("$1,234$.") == "1234"
    assert normalize_answer("\\$18.00") == "18.00"
    assert normalize_answer("\\dfrac{1}{2}") == "\\frac{1}{2}"
    assert normalize_answer("90^{\\circ}") == "90"
    assert normalize_answer("4\\text{ cm}^2") == "4"
    assert normalize_answer("12 inches") == "12"
    assert normalize_answer("2 and 3") == "2 and 3"  # not a unit
    assert normalize_answer("\\text{Evelyn}") == "Evelyn"
    assert normalize_answer("1,2") == "1,2"  # a list, not a thousands separator


# ---------------------------------------------------------------------------------------------------- equivalence


def test_is_equivalent_edges(monkeypatch):
    assert is_equivalent(None, "3") is False
    assert is_equivalent("", "3") is False
    assert is_equivalent("evelyn", "\\text{Evelyn}") is True
    assert is_equivalent("\\frac{1}{3}", "0.33") is False

    def boom(pred, gold):
        raise AssertionError("math-verify should not be needed")

    monkeypatch.setattr(grading, "_mv_equal", boom)  # equal normalized strings never reach the verifier
    assert is_equivalent("\\text{No Solution}", "no solution") is True
    assert is_equivalent("\\text{(B)}", "B") is True


def test_verifier_exception_is_an_error_not_wrong(monkeypatch):
    def broken(pred, gold):
        raise TypeError("cannot compare")

    monkeypatch.setattr(grading, "_mv_equal", broken)
    with pytest.raises(GradingError, match="TypeError: cannot compare"):
        is_equivalent("2", "3")
    assert grade("\\boxed{2}", "3") == Grade("2", False, "error")


def test_timeout_in_main_thread_is_an_error_and_restores_sigalrm():
    before = signal.getsignal(signal.SIGALRM)
    g = grade("\\boxed{9^{9^{9^{9}}}}", "10^{10^{10}}", timeout_s=0.5)  # sympy would never finish
    assert g == Grade("9^{9^{9^{9}}}", False, "error")
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert grade("\\boxed{0.5}", "\\frac12").correct  # the verifier still works afterwards


def test_works_outside_the_main_thread():
    import threading

    out = {}
    t = threading.Thread(target=lambda: out.update(g=grade("\\boxed{\\frac{1}{2}}", "0.5")))
    t.start()
    t.join(timeout=60)
    assert out["g"] == Grade("\\frac{1}{2}", True, "ok")


def test_no_answer_and_summary():
    grades = [grade("\\boxed{4}", "4"), grade("\\boxed{5}", "4"), grade("I give up.", "4"),
              Grade("x", False, "error")]
    assert grades[2] == Grade(None, False, "no_answer")
    assert summarize(grades) == {"n": 4, "n_correct": 1, "n_ok": 2, "n_no_answer": 1, "n_error": 1,
                                 "accuracy": 0.25}
    assert summarize([])["accuracy"] is None


# ---------------------------------------------------------------------------------------------------- grade_file


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_grade_file(tmp_path, capsys):
    src, out = tmp_path / "responses.jsonl", tmp_path / "out" / "graded.jsonl"
    _write(src, [
        {"id": 1, "response": "So $\\boxed{\\frac{1}{2}}$.", "answer": "0.5"},
        {"id": 2, "response": "The answer is 41.", "answer": "She has <<6*7=42>>42.\n#### 42"},
        {"id": 3, "response": "Hmm, not sure.", "answer": "7"},
        {"id": 4, "response": "The answer is 1,234.", "answer": "Adding gives $\\boxed{1234}$."},
    ])
    summary = grade_file(GradeConfig(input=str(src), output=str(out)))
    assert summary == {"n": 4, "n_correct": 2, "n_ok": 3, "n_no_answer": 1, "n_error": 0, "accuracy": 0.5}
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert [r["extracted_answer"] for r in rows] == ["\\frac{1}{2}", "41", None, "1,234"]
    assert [r["correct"] for r in rows] == [True, False, False, True]
    assert [r["grade_status"] for r in rows] == ["ok", "ok", "no_answer", "ok"]
    saved = json.loads((tmp_path / "out" / "graded.jsonl.config.json").read_text())
    assert saved["command"] == "GradeConfig" and saved["style"] == "auto" and saved["input"] == str(src)
    assert "2 correct" in capsys.readouterr().out


def test_grade_file_custom_fields_and_style(tmp_path):
    src, out = tmp_path / "r.jsonl", tmp_path / "g.jsonl"
    _write(src, [{"completion": "\\boxed{9}\n#### 8", "gold": 8}])
    cfg = GradeConfig(input=str(src), output=str(out), response_field="completion", reference_field="gold",
                      style="gsm8k")
    assert grade_file(cfg)["n_correct"] == 1


@pytest.mark.parametrize("bad,field", [
    ({"answer": "3"}, "response"),
    ({"response": "\\boxed{3}"}, "answer"),
    ({"response": ["3"], "answer": "3"}, "response"),
    ({"response": "\\boxed{3}", "answer": "no final line\n####"}, "answer"),
])
def test_grade_file_bad_record_names_line_and_field_and_writes_nothing(tmp_path, bad, field):
    src, out = tmp_path / "responses.jsonl", tmp_path / "graded.jsonl"
    _write(src, [{"response": "\\boxed{1}", "answer": "1"}, {"response": "\\boxed{2}", "answer": "2"}, bad])
    with pytest.raises(InputError) as e:
        grade_file(GradeConfig(input=str(src), output=str(out)))
    assert (e.value.line, e.value.field) == (3, field)
    assert f"{src}:3" in str(e.value)
    assert not out.exists() and not (tmp_path / "graded.jsonl.config.json").exists()
    assert list(tmp_path.iterdir()) == [src]
