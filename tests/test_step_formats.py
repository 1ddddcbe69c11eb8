"""Step labels in samples: the rollout and pre-split `step_labels` fields, Math-Shepherd and PRM800K records (hand
written and the ../shared/data fixtures), and every bad-input case naming file, line and field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from implicit_prm.core.errors import InputError
from implicit_prm.data import read_samples

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHEPHERD = SHARED / "math_shepherd_samples" / "samples_math-shepherd.jsonl"
PRM800K = SHARED / "prm800k_samples" / "samples_prm800k.jsonl"


def write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def error(tmp_path, records, **kw) -> str:
    path = write(tmp_path / "bad.jsonl", records)
    with pytest.raises(InputError) as e:
        read_samples(path, **kw)
    return str(e.value)


# ---------------------------------------------------------------------------------------------- step_labels fields

def test_rollout_step_labels_per_completion(tmp_path):
    rec = {"prompt": "p", "completions": ["a\n\nb", "c\n\nd\n\ne", "f"], "correctness": [True, False, False],
           "step_labels": [[1, 1], [True, 0.25, False], None]}
    a, b, c = read_samples(write(tmp_path / "r.jsonl", [rec]))
    assert (a.step_labels, b.step_labels, c.step_labels) == ([1.0, 1.0], [1.0, 0.25, 0.0], None)
    assert b.record["step_labels"] == [True, 0.25, False]  # sliced like any per-completion field


def test_presplit_and_flat_step_labels(tmp_path):
    recs = [{"problem": "P", "steps": ["s1", "s2"], "final_answer_correct": False, "step_labels": [1, 0]},
            {"problem": "Q", "steps": ["s1"], "final_answer_correct": True},
            {"prompt": "R", "response": "x\n\ny", "label": 1, "step_labels": [0.5, 1]}]
    a, b, c = read_samples(write(tmp_path / "p.jsonl", recs))
    assert (a.steps, a.step_labels, a.label) == (["s1", "s2"], [1.0, 0.0], 0)
    assert b.step_labels is None and c.step_labels == [0.5, 1.0]


@pytest.mark.parametrize("records, where, what", [
    ([{"prompt": "p", "completions": ["a", "b"], "step_labels": [[1]]}], ":1: field 'step_labels'", "one entry per"),
    ([{"prompt": "p", "completions": ["a"], "step_labels": {"x": 1}}], ":1: field 'step_labels'", "one entry per"),
    ([{"prompt": "p", "completions": ["a"], "step_labels": [[1, 1.5]]}], "field 'step_labels[0][1]'", "in [0, 1]"),
    ([{"prompt": "p", "completions": ["a"], "step_labels": [["1"]]}], "field 'step_labels[0][0]'", "string '1'"),
    ([{"prompt": "p", "completions": ["a"], "step_labels": [7]}], "field 'step_labels[0]'", "non-empty list"),
    ([{"prompt": "p", "completions": ["a"], "step_labels": [[]]}], "field 'step_labels[0]'", "non-empty list"),
    ([{"problem": "P", "steps": ["a"]}, {"problem": "P", "steps": ["a", "b"], "step_labels": [1]}],
     ":2: field 'step_labels'", "has 1 entries but there are 2 steps"),
    ([{"problem": "P", "steps": ["a", "b"], "step_labels": [1, -0.5]}], ":1: field 'step_labels[1]'", "in [0, 1]"),
    ([{"problem": "P", "steps": ["a"], "step_labels": [float("nan")]}], "field 'step_labels[0]'", "in [0, 1]"),
    ([{"prompt": "p", "response": "r", "step_labels": [None]}], "field 'step_labels[0]'", "found null"),
])
def test_bad_step_labels(tmp_path, records, where, what):
    msg = error(tmp_path, records)
    assert "bad.jsonl" in msg and where in msg and what in msg, msg


def test_require_step_labels(tmp_path):
    recs = [{"problem": "P", "steps": ["a"], "step_labels": [1]},
            {"prompt": "p", "completions": ["a", "b"], "step_labels": [[1], None]}]
    msg = error(tmp_path, recs, require_step_labels=True)
    assert ":2: field 'step_labels'" in msg and "missing step labels" in msg
    assert len(read_samples(write(tmp_path / "ok.jsonl", recs[:1]), require_step_labels=True)) == 1


# ---------------------------------------------------------------------------------------------------- Math-Shepherd

SHEP = {"input": "Tom has 2+3 apples. How many? Step 1: 2+3=<<2+3=5>>5 ки\nStep 2: He eats 1, so 5-1=4. ки\n"
                 "Step 3: The answer is: 4 ки",
        "label": "Tom has 2+3 apples. How many? Step 1: 2+3=<<2+3=5>>5 +\nStep 2: He eats 1, so 5-1=4. -\n"
                 "Step 3: The answer is: 4 -",
        "task": "GSM8K"}


def test_math_shepherd_record(tmp_path):
    (s,) = read_samples(write(tmp_path / "ms.jsonl", [SHEP]), step_separator="\n")
    assert s.prompt == "Tom has 2+3 apples. How many?"
    assert s.steps == ["Step 1: 2+3=<<2+3=5>>5", "Step 2: He eats 1, so 5-1=4.", "Step 3: The answer is: 4"]
    assert s.response == "\n".join(s.steps) and s.step_labels == [1.0, 0.0, 0.0] and s.label == 0
    assert s.record == SHEP


@pytest.mark.parametrize("change, field, what", [
    ({"label": SHEP["label"].replace(" +\n", "\n")}, "label", "at step 1"),  # a tag's label dropped
    ({"label": SHEP["label"] + " +"}, "label", "more text than 'input'"),  # one label too many
    ({"label": SHEP["label"].replace("eats 1", "eats 2")}, "label", "at step 2"),
    ({"label": SHEP["label"].replace("5 +\n", "5 ?\n")}, "label", "at step 1"),
    ({"input": SHEP["input"] + " tail"}, "input", "after the last step tag"),
    ({k: SHEP[k].replace("Step 1:", "First:") for k in ("input", "label")}, "input", "'Step 1:'"),
    ({"input": SHEP["input"].replace("ки\nStep 2", "ки ки\nStep 2"), "label": SHEP["label"].replace(
        "+\nStep 2", "+ +\nStep 2")}, "input", "step 2 is empty"),
])
def test_bad_math_shepherd(tmp_path, change, field, what):
    msg = error(tmp_path, [SHEP, {**SHEP, **change}])
    assert f"bad.jsonl:2: field '{field}'" in msg and what in msg, msg


@pytest.mark.skipif(not SHEPHERD.exists(), reason="needs ../shared/data")
def test_math_shepherd_fixture():
    samples = read_samples(SHEPHERD)
    assert len(samples) == 7
    s = samples[0]
    assert s.prompt.startswith("Janet pays $40/hour") and s.prompt.endswith("in a year?")
    assert s.steps[0] == "Step 1: Janet spends 3 hours + 5 hours = <<3+5=8>>8 hours per week on music lessons."
    assert s.steps[-1].endswith("The answer is: 13520") and len(s.steps) == 5
    assert [x.step_labels for x in samples] == [
        [1, 1, 1, 1, 0], [0, 0, 0], [0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0], [0, 0, 0]]
    assert [x.label for x in samples] == [0] * 7


# ---------------------------------------------------------------------------------------------------------- PRM800K

def step(*ratings, chosen=0, human=None):
    return {"completions": [{"text": f"t{i}:{r}", "rating": r, "flagged": None} for i, r in enumerate(ratings)],
            "human_completion": human, "chosen_completion": chosen}


def prm(steps, reason="solution"):
    return {"labeler": "x", "question": {"problem": "What is 1+1?", "ground_truth_answer": "2"},
            "label": {"steps": steps, "total_time": 1, "finish_reason": reason}}


def test_prm800k_trajectory_and_labels(tmp_path):
    recs = [prm([step(1), step(-1, 0, chosen=1), step(-1, chosen=None, human={"text": "mine", "rating": None}),
                 step(1, -1, 1, chosen=None)], reason="found_error"),
            prm([step(0), step(1, 1, chosen=1)]),
            prm([step(1), step(chosen=None)], reason="give_up"),
            prm([step(1, chosen=None, human="plain text step"), step(-1)], reason="bad_problem")]
    path = write(tmp_path / "prm.jsonl", recs)
    a, b, c, d = read_samples(path)
    assert (a.prompt, a.steps) == ("What is 1+1?", ["t0:1", "t1:0", "mine", "t1:-1"])
    assert a.step_labels == [1.0, 1.0, 1.0, 0.0] and a.label == 0  # neutral -> 1; found_error -> 0
    assert (b.steps, b.step_labels, b.label) == (["t0:0", "t1:1"], [1.0, 1.0], 1)
    assert (c.steps, c.step_labels, c.label) == (["t0:1"], [1.0], 0)  # nothing to follow at the end
    assert (d.steps, d.step_labels, d.label) == (["plain text step", "t0:-1"], [1.0, 0.0], 0)
    assert a.response == "t0:1\n\nt1:0\n\nmine\n\nt1:-1" and a.record == recs[0]
    strict = read_samples(path, prm800k_neutral=0.0)
    assert strict[0].step_labels == [1.0, 0.0, 1.0, 0.0] and strict[1].step_labels == [0.0, 1.0]


@pytest.mark.parametrize("rec, field, what", [
    (prm([step(1, chosen=3)]), "label.steps[0].chosen_completion", "index into the 1 completions"),
    (prm([step(1, chosen=None), step(1)]), "label.steps[0].chosen_completion", "before the last step"),
    (prm([step(2)]), "label.steps[0].completions[0].rating", "-1, 0 or 1"),
    (prm([step(1)], reason="done"), "label.finish_reason", "expected one of"),
    (prm([step(chosen=None)]), "label.steps", "no step on the labelled trajectory"),
    ({**prm([step(1)]), "question": "What?"}, "question", "expected an object"),
    ({**prm([step(1)]), "question": {"problem": " "}}, "question.problem", "non-empty text"),
])
def test_bad_prm800k(tmp_path, rec, field, what):
    msg = error(tmp_path, [prm([step(1)]), rec])
    assert f"bad.jsonl:2: field '{field}'" in msg and what in msg, msg


@pytest.mark.skipif(not PRM800K.exists(), reason="needs ../shared/data")
def test_prm800k_fixture():
    samples = read_samples(PRM800K)
    assert [len(s.steps) for s in samples] == [6, 7, 5, 7, 8, 12]
    assert [s.label for s in samples] == [1, 0, 1, 1, 0, 1]  # solution, found_error, solution x2, give_up, solution
    assert samples[0].steps[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."  # the labeler's own step
    assert samples[1].step_labels == [1, 1, 1, 1, 1, 1, 0]  # its step 2 is neutral (rating 0)
    assert samples[1].steps[-1].startswith("For the Democrats, there are 5! ways to ")  # the first -1 completion
    assert all(s.step_labels == [1.0] * len(s.steps) for s in samples if s is not samples[1])
    assert samples[4].steps[-1].startswith("By symmetry")  # give_up: ends after the human step
