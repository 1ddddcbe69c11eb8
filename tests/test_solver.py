"""Version-2 simulated solver: exact first errors per error kind, diverse correct texts, recurring mistakes,
extractable answers, no surface leak, and continuing a prefix with the same error model."""
import random
import re
from collections import Counter

import pytest

from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts
from implicit_prm.data.chains import ChainProblem, make_problem
from implicit_prm.data.grading import extract_answer
from implicit_prm.data.solver import KINDS, Profile, base_weights, continue_solution, make_profile, no_carry, solve_v2
from implicit_prm.data.solver_text import FINALS, Style, write_final, write_step

# 47 + 15 = 62 (a carry), 62 - 28 = 34 (a borrow), 34 * 6 = 204 (a carry), 204 - 9 = 195
HAND = ChainProblem(start=47, ops=(("+", 15), ("-", 28), ("*", 6), ("-", 9)), prompt="p")
CALM = Profile(difficulty=0.0, temptation=tuple({k: 1.0 for k in KINDS} for _ in range(4)), slip=(1, 1, 1, 1))


def norm(text):
    return re.sub(r"[\W_]+", "", text.lower())


def forced(kind, at, problem=HAND, seed=0):
    """A completion with every step before `at` correct and `kind` forced at step `at`."""
    force = {p: "correct" for p in range(at)} | {at: kind}
    return solve_v2(problem, CALM, random.Random(seed), f"hand:{seed}", force=force)


def v2(**kw):
    return generate_rollouts(BuiltinDataConfig(output="x", version=2, **{"n_problems": 100, **kw}))


def testno_carry_arithmetic():
    assert no_carry(47, "+", 15) == 52 and no_carry(95, "+", 7) == 92
    assert no_carry(62, "-", 28) == 46 and no_carry(34, "*", 6) == 184 and no_carry(36, "*", 7) == 212
    assert no_carry(12, "+", 3) == 15  # nothing to forget: not offered as a carry slip
    assert "carry_slip" not in base_weights(12, "+", 3, 0, 3)
    assert no_carry(5, "-", 9) is None and no_carry(7, "*", 8) is None


@pytest.mark.parametrize("kind, at, value, n_steps", [
    ("misread_op", 0, 47 * 15, 4), ("carry_slip", 0, 52, 4), ("carry_slip", 1, 46, 4), ("carry_slip", 2, 184, 4),
    ("reversed_sub", 1, 28 - 62, 4), ("dropped_step", 1, 62 * 6, 3), ("repeated_step", 2, 34 - 28, 5),
    ("arithmetic_slip", 3, 196, 4),
])
def test_each_error_kind_has_exact_first_error(kind, at, value, n_steps):
    comp = forced(kind, at)
    assert comp.first_error == at and comp.error_kind == kind
    assert len(comp.steps) == len(comp.states) == n_steps
    assert [s.value for s in comp.states[:at]] == HAND.values[:at]
    assert comp.states[at].value == value != HAND.values[at] if at < 4 else True
    assert str(value) in comp.steps[at]
    assert comp.answer != HAND.answer and extract_answer("\n\n".join(comp.steps)) == str(comp.answer)


def test_impossible_or_harmless_forced_mistakes_are_refused():
    with pytest.raises(ValueError, match="impossible"):
        forced("reversed_sub", 0)  # "+" step
    with pytest.raises(ValueError, match="impossible"):
        forced("dropped_step", 3)  # no later operation to jump to
    twice = ChainProblem(start=3, ops=(("+", 5), ("+", 5), ("*", 2)), prompt="p")
    with pytest.raises(RuntimeError):  # repeating "+ 5" gives the true value: never a mistake
        forced("repeated_step", 1, problem=twice)


def test_first_error_is_exact_on_generated_samples():
    """Across many problems: first_error is the first written step whose value differs from the truth after the
    same number of operations; the stated value is in the step's text; correct iff the final answer is right."""
    rng, n_wrong = random.Random(5), 0
    for idx in range(150):
        problem = make_problem(rng, 3, 6)
        profile = make_profile(problem, seed=5)
        for j in range(4):
            comp = solve_v2(problem, profile, random.Random(f"{idx}:{j}"), f"s{idx}:{j}")
            truth = problem.values
            wrong = [p for p, s in enumerate(comp.states) if p >= len(truth) or s.value != truth[p]]
            assert comp.first_error == (wrong[0] if wrong else -1)
            assert (comp.first_error < 0) == (comp.answer == problem.answer)
            assert (comp.error_kind is None) == (comp.first_error < 0)
            assert all(str(s.value) in text for s, text in zip(comp.states, comp.steps))
            n_wrong += comp.first_error >= 0
    assert n_wrong > 100


def test_every_final_template_is_extractable():
    style = Style(True, 1.0, 1.0, 1.0, 1.0, "*", FINALS[0])
    for template in FINALS:
        for x in (-12, 0, 7, 123):
            final = write_final(Style(False, 0, 0, 0, 0, "*", template), x)
            last = write_step(style, "s", 2, 5, "-", 17, x + 3) + " " + final
            assert extract_answer(final) == str(x), template
            assert extract_answer("Step 1: 2 + 3 = 5.\n\n" + last) == str(x), template


def test_records_v2_schema_determinism_and_extraction():
    recs = v2(samples_per_problem=4, seed=3)
    assert recs == v2(samples_per_problem=4, seed=3) and recs != v2(samples_per_problem=4, seed=4)
    for rec in recs:
        assert set(rec) == {"prompt", "completions", "correctness", "first_error", "error_kind", "solver_states",
                            "answer", "solver"}
        assert any(rec["correctness"]) and not all(rec["correctness"])  # balanced by default
        for comp, ok, fe, kind in zip(rec["completions"], rec["correctness"], rec["first_error"], rec["error_kind"]):
            assert ok == (fe == -1) == (kind is None) and (kind is None or kind in KINDS)
            assert (extract_answer(comp) == str(rec["answer"])) == ok


def test_zero_error_rate_is_all_correct():
    assert all(all(r["correctness"]) for r in v2(n_problems=30, samples_per_problem=4, step_error_rate=0.0))


@pytest.fixture(scope="module")
def sixteen():
    return v2(n_problems=60, samples_per_problem=16, seed=1, balance=False)


def test_correct_solutions_are_diverse(sixteen):
    texts = [[norm(c) for c, ok in zip(r["completions"], r["correctness"]) if ok] for r in sixteen]
    texts = [t for t in texts if len(t) >= 3]
    assert len(texts) >= 20
    assert sum(len(set(t)) >= 3 for t in texts) >= 0.9 * len(texts)


def test_wrong_answers_recur_within_a_problem(sixteen):
    repeated = 0
    for rec in sixteen:
        wrong = Counter(extract_answer(c) for c, ok in zip(rec["completions"], rec["correctness"]) if not ok)
        repeated += bool(wrong) and wrong.most_common(1)[0][1] >= 2
    assert repeated >= 0.4 * len(sixteen)


def test_difficulty_varies_by_step_and_problem(sixteen):
    assert sum(base_weights(36, "*", 7, 1, 4).values()) > sum(base_weights(3, "+", 4, 1, 4).values())
    assert sum(base_weights(62, "-", 28, 1, 4).values()) > sum(base_weights(68, "-", 21, 1, 4).values())
    acc = [sum(r["correctness"]) / 16 for r in sixteen]
    assert any(a >= 15 / 16 for a in acc) and any(a <= 1 / 16 for a in acc)


def test_surface_is_independent_of_correctness():
    """The same surface seed writes a correct and a wrong solution in the same words (only numbers differ)."""
    digits = re.compile(r"-?\d+")
    for seed in range(20):
        right = solve_v2(HAND, CALM, random.Random(0), f"same:{seed}")
        wrong = solve_v2(HAND, CALM, random.Random(0), f"same:{seed}", force={0: "correct", 1: "carry_slip"})
        assert right.first_error == -1 and wrong.first_error == 1
        assert [digits.sub("#", s) for s in right.steps] == [digits.sub("#", s) for s in wrong.steps]


def test_continue_a_correct_prefix():
    rng = random.Random(2)
    for idx in range(60):
        problem = make_problem(rng, 3, 6)
        profile = make_profile(problem, seed=2)
        comp = solve_v2(problem, profile, random.Random(idx), f"a{idx}", force={p: "correct" for p in range(6)})
        for k in range(len(comp.steps)):
            cont = continue_solution(problem, profile, comp.steps[:k], random.Random(f"{idx}:{k}"), f"b{idx}:{k}")
            assert cont.steps[:k] == comp.steps[:k]
            assert cont.first_error == -1 or cont.first_error >= k
            assert (cont.first_error < 0) == (cont.answer == problem.answer)


def test_continue_a_wrong_prefix_keeps_its_first_error():
    rng, n = random.Random(3), 0
    for idx in range(80):
        problem = make_problem(rng, 3, 6)
        profile = make_profile(problem, seed=3)
        comp = solve_v2(problem, profile, random.Random(idx), f"a{idx}")
        j = comp.first_error
        if j < 0:
            continue
        for k in range(j + 1, len(comp.steps)):
            cont = continue_solution(problem, profile, comp.steps[:k], random.Random(k), f"c{idx}",
                                     state=comp.states[k - 1])
            assert cont.steps[:k] == comp.steps[:k]
            assert cont.first_error == j and cont.error_kind == comp.error_kind
            assert cont.answer != problem.answer
            n += 1
    assert n > 20
