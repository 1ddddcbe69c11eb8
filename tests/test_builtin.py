"""Built-in arithmetic data: determinism, step-by-step arithmetic truth, first-error semantics and balance."""
import hashlib
import json
import random
import re

import pytest

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.config import from_mapping
from implicit_prm.core.errors import ConfigError
from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts, solve
from implicit_prm.data.chains import ChainProblem, make_problem

STEP = re.compile(r"^Step (\d+): (-?\d+) ([+*-]) (\d+) = (-?\d+)(\. The answer is (-?\d+)\.)?$")
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def parse(completion):
    """-> list of (k, a, op, b, c) per step, and the stated final answer."""
    steps, answer = [], None
    for line in completion.split("\n\n"):
        m = STEP.match(line)
        assert m, f"unparsable step {line!r}"
        steps.append((int(m[1]), int(m[2]), m[3], int(m[4]), int(m[5])))
        if m[7] is not None:
            answer = int(m[7])
    return steps, answer


def cfg(**kw):
    """Version 1: these tests parse its one-equation steps (version 2 is tested in test_solver.py)."""
    return BuiltinDataConfig(output="unused.jsonl", **{"n_problems": 200, "version": 1, **kw})


@pytest.fixture(scope="module")
def records():
    return generate_rollouts(cfg(samples_per_problem=4, step_error_rate=0.2, max_steps=6))


def test_hand_example():
    """7 + 5 = 12, 12 * 3 = 36, 36 - 4 = 32 with no errors."""
    p = ChainProblem(start=7, ops=(("+", 5), ("*", 3), ("-", 4)), prompt="p")
    assert p.values == [12, 36, 32] and p.answer == 32
    steps, fe = solve(p, 0.0, random.Random(0))
    assert steps == ["Step 1: 7 + 5 = 12", "Step 2: 12 * 3 = 36", "Step 3: 36 - 4 = 32. The answer is 32."]
    assert fe == -1


def test_forced_error_propagates():
    p = ChainProblem(start=7, ops=(("+", 5), ("*", 3), ("-", 4)), prompt="p")
    steps, fe = solve(p, 0.0, random.Random(1), force_error_at=1)
    (_, a0, _, _, c0), (_, a1, _, b1, c1), (_, a2, _, b2, c2) = parse("\n\n".join(steps))[0]
    assert fe == 1 and c0 == 12 and a1 == 12 and c1 != 36
    assert a2 == c1 and c2 == c1 - 4 != 32  # step 3 is right given its (wrong) input


def test_deterministic_for_a_seed():
    assert generate_rollouts(cfg(seed=3)) == generate_rollouts(cfg(seed=3))
    assert generate_rollouts(cfg(seed=3)) != generate_rollouts(cfg(seed=4))


def test_problems_are_well_formed():
    rng = random.Random(0)
    for _ in range(500):
        p = make_problem(rng, 3, 6)
        assert 3 <= len(p.ops) <= 6 and 2 <= p.start <= 20
        assert all(2 <= b <= 20 for _, b in p.ops)
        assert all(b >= 2 for op, b in p.ops if op == "*")
        assert all(abs(v) < 1000 for v in p.values)
        assert p.prompt.endswith("?") and str(p.start) in p.prompt


def test_record_schema(records):
    for rec in records:
        assert set(rec) == {"prompt", "completions", "correctness", "first_error", "answer"}
        n = len(rec["completions"])
        assert n == 4 and len(rec["correctness"]) == n and len(rec["first_error"]) == n
        assert all(c == (fe == -1) for c, fe in zip(rec["correctness"], rec["first_error"]))
        json.dumps(rec)


def test_steps_chain_and_count(records):
    """One "Step k:" per operation, numbered 1..n; step 1 starts from the prompt's start number, every later
    step starts from the previous step's result; the stated answer is the last step's result."""
    for rec in records:
        start = int(re.search(r"\d+", rec["prompt"])[0])
        n_ops = len(re.findall(r"\b(?:add|subtract|take away|increase|decrease|multiply)\b", rec["prompt"], re.I))
        for comp in rec["completions"]:
            steps, answer = parse(comp)
            assert len(re.findall(r"Step \d+:", comp)) == len(steps) == n_ops
            assert [s[0] for s in steps] == list(range(1, n_ops + 1))
            assert steps[0][1] == start
            assert all(steps[i][1] == steps[i - 1][4] for i in range(1, len(steps)))
            assert answer == steps[-1][4]


def test_correct_completions_are_right_step_by_step(records):
    n = 0
    for rec in records:
        for comp, ok in zip(rec["completions"], rec["correctness"]):
            if ok:
                steps, answer = parse(comp)
                assert all(APPLY[op](a, b) == c for _, a, op, b, c in steps)
                assert answer == rec["answer"]
                n += 1
    assert n > 100


def test_first_error_semantics(records):
    """Steps before first_error are right, step first_error is wrong, and the final answer is wrong."""
    n = 0
    for rec in records:
        for comp, fe in zip(rec["completions"], rec["first_error"]):
            if fe < 0:
                continue
            steps, answer = parse(comp)
            assert 0 <= fe < len(steps)
            assert all(APPLY[op](a, b) == c for _, a, op, b, c in steps[:fe])
            _, a, op, b, c = steps[fe]
            assert APPLY[op](a, b) != c
            assert answer != rec["answer"]
            n += 1
    assert n > 100


def test_balance_holds():
    for rec in generate_rollouts(cfg(samples_per_problem=2, step_error_rate=0.15)):
        assert any(rec["correctness"]) and not all(rec["correctness"])
    # extreme rates still balance (by forcing)
    for rate in (0.01, 1.0):
        for rec in generate_rollouts(cfg(n_problems=30, samples_per_problem=3, step_error_rate=rate)):
            assert any(rec["correctness"]) and not all(rec["correctness"])


def test_error_rate_zero_is_all_correct():
    for balance in (True, False):
        recs = generate_rollouts(cfg(step_error_rate=0.0, samples_per_problem=3, balance=balance))
        assert all(all(r["correctness"]) and set(r["first_error"]) == {-1} for r in recs)


def test_unbalanced_can_be_one_sided():
    recs = generate_rollouts(cfg(step_error_rate=0.15, samples_per_problem=2, balance=False))
    assert any(all(r["correctness"]) for r in recs)


def test_write_builtin(tmp_path):
    out = tmp_path / "sub" / "builtin.jsonl"
    c = BuiltinDataConfig(output=str(out), n_problems=7, seed=1)
    assert write_builtin(c) == 7
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == generate_rollouts(c)
    # the data, its stats, its FLOPs ledger and its config, no temp file left behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["builtin.jsonl", "builtin.jsonl.config.json",
                                                          "builtin.jsonl.flops.json", "builtin.jsonl.stats.json"]
    ledger = json.loads((out.parent / "builtin.jsonl.flops.json").read_text())
    gen = ledger["kinds"]["generation"]
    assert ledger["simulated"] and ledger["policy_model"] == "smollm2-135m" and gen["sequences"] == 14
    from implicit_prm.collect.simulated import policy_tokenizer
    from implicit_prm.models.chat import chat_text
    tok = policy_tokenizer()
    n = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    recs = generate_rollouts(c)
    assert gen["prompt_tokens"] == sum(n(chat_text(tok, r["prompt"], None)) for r in recs)  # one prefill a problem
    assert gen["generated_tokens"] == sum(n(x) for r in recs for x in r["completions"])


def test_version_1_output_is_pinned():
    """Version 1 stays reachable and writes exactly what it wrote before version 2 existed (hashes and one
    record taken from the generator before the change); version 2 is the default."""
    def digest(**kw):
        recs = generate_rollouts(BuiltinDataConfig(output="x", version=1, **kw))
        return hashlib.sha256(json.dumps(recs, sort_keys=True).encode()).hexdigest()
    assert BuiltinDataConfig(output="x").version == 2
    assert digest(n_problems=50, samples_per_problem=4, seed=7) == \
        "95468f5024c5cf08c0c32b5f67c6f42056122d1f66a4f70a7880c75381afcd2a"
    assert digest(n_problems=20, samples_per_problem=2, seed=0, step_error_rate=0.3, max_steps=6, balance=False) == \
        "b8a1fa4ab593400e456a0705fcd944d45519ed88dd561d5b5d08380648f6a633"
    rec = generate_rollouts(BuiltinDataConfig(output="x", n_problems=1, seed=7, version=1))[0]
    assert rec == {
        "prompt": "Begin with the number 6. Decrease it by 3, then add 19, then add 13, then multiply by 2. "
                  "What number do you end up with?",
        "completions": ["Step 1: 6 - 3 = 3\n\nStep 2: 3 + 19 = 22\n\nStep 3: 22 + 13 = 35\n\n"
                        "Step 4: 35 * 2 = 60. The answer is 60.",
                        "Step 1: 6 - 3 = 3\n\nStep 2: 3 + 19 = 22\n\nStep 3: 22 + 13 = 35\n\n"
                        "Step 4: 35 * 2 = 70. The answer is 70."],
        "correctness": [False, True], "first_error": [3, -1], "answer": 70}


def test_version_2_is_selected_by_the_version_field():
    rec = generate_rollouts(BuiltinDataConfig(output="x", n_problems=1, seed=7, version=2))[0]
    assert "error_kind" in rec and len(rec["error_kind"]) == 2


def test_config_validation():
    with pytest.raises(ConfigError, match="max_steps"):
        BuiltinDataConfig(output="x", min_steps=4, max_steps=3)
    with pytest.raises(ConfigError, match="step_error_rate"):
        from_mapping(BuiltinDataConfig, {"output": "x", "step_error_rate": 1.5})
    with pytest.raises(ConfigError, match="version"):
        BuiltinDataConfig(output="x", version=3)
    with pytest.raises(ConfigError, match="output"):
        from_mapping(BuiltinDataConfig, {})
