"""Tests for data/formats.py: the three input formats, ProcessBench as shipped, and every validation error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from implicit_prm.core.errors import InputError
from implicit_prm.data import group_by_prompt, read_samples

PROCESSBENCH_GSM8K = Path("/work/shared/data/processbench/gsm8k.json")


def write_jsonl(path: Path, records: list) -> Path:
    """Write one JSON value per line (records may be non-dicts or raw strings for bad-input tests)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rollouts_one_sample_per_completion_with_sliced_fields(tmp_path):
    rec = {"prompt": "1+1?", "completions": ["It is 2.", "It is 3."], "correctness": [True, False],
           "first_error": [-1, 0], "source": "gsm8k", "tags": ["a", "b", "c"]}
    path = write_jsonl(tmp_path / "roll.jsonl", [rec])
    s0, s1 = read_samples(path)
    assert (s0.prompt, s0.response, s0.label, s0.steps) == ("1+1?", "It is 2.", 1, None)
    assert (s1.response, s1.label) == ("It is 3.", 0)
    assert (s0.group, s0.index, s1.group, s1.index) == (0, 0, 0, 1)
    assert s1.source == (str(path), 1)
    assert s1.record == {"prompt": "1+1?", "response": "It is 3.", "correctness": False, "completion_index": 1,
                         "first_error": 0, "source": "gsm8k", "tags": ["a", "b", "c"]}
    assert list(s0.record)[:4] == ["prompt", "response", "correctness", "completion_index"]


def test_flat_record_unchanged_and_bool_labels(tmp_path):
    recs = [{"prompt": "p", "response": "r1", "label": 1, "id": 7},
            {"prompt": "p", "response": "r2", "label": False},
            {"prompt": "q", "response": "r3"}]
    path = write_jsonl(tmp_path / "flat.jsonl", recs)
    a, b, c = read_samples(path)
    assert (a.label, b.label, c.label) == (1, 0, None)
    assert a.record == recs[0] and c.record == recs[2]
    assert (a.steps, a.index, b.group, c.group, c.source[1]) == (None, 0, 1, 2, 3)


def test_presplit_label_is_first_error_not_outcome(tmp_path):
    rec = {"id": "x", "problem": "P", "steps": ["Step one.", "Step two."], "final_answer_correct": True, "label": 1}
    path = write_jsonl(tmp_path / "pb.jsonl", [rec])
    (s,) = read_samples(path, step_separator="\n")
    assert s.label == 1 and s.record["label"] == 1  # outcome from final_answer_correct; label passes through
    assert s.record == rec
    assert (s.prompt, s.response, s.steps) == ("P", "Step one.\nStep two.", ["Step one.", "Step two."])
    rec2 = {"problem": "P", "steps": ["s"], "final_answer_correct": False, "label": -1}
    (t,) = read_samples(write_jsonl(tmp_path / "pb2.jsonl", [rec2]))
    assert t.label == 0 and t.record["label"] == -1


def test_presplit_label_fallbacks(tmp_path):
    recs = [{"prompt": "P", "steps": ["a", "b"], "correctness": False, "label": 1},
            {"problem": "Q", "steps": ["c"], "label": 0}]
    a, b = read_samples(write_jsonl(tmp_path / "pb.jsonl", recs))
    assert (a.prompt, a.response, a.label) == ("P", "a\n\nb", 0)
    assert (b.prompt, b.label) == ("Q", None)  # `label` is never read as the outcome


def test_mixed_formats_and_json_array(tmp_path):
    recs = [{"prompt": "A", "completions": ["x", "y", "z"], "correctness": [1, 0, 1]},
            {"prompt": "B", "response": "w", "label": 0},
            {"problem": "C", "steps": ["s1", "s2"], "final_answer_correct": True}]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(recs), encoding="utf-8")
    samples = read_samples(path)
    assert [(s.prompt, s.label, s.group, s.index) for s in samples] == [
        ("A", 1, 0, 0), ("A", 0, 0, 1), ("A", 1, 0, 2), ("B", 0, 1, 0), ("C", 1, 2, 0)]


def test_processbench_gsm8k_as_shipped():
    samples = read_samples(PROCESSBENCH_GSM8K, require_label=True)
    assert len(samples) == 400
    # 200 final answers are correct; 193 of those also have every step correct (ProcessBench label == -1).
    assert sum(s.label == 1 for s in samples) == 200
    assert sum(s.record["label"] == -1 for s in samples) == 193
    assert sum(s.label == 1 and s.record["label"] == -1 for s in samples) == 193
    first = samples[0]
    assert first.record["id"] == "gsm8k-0" and first.response == "\n\n".join(first.steps)
    assert first.source == (str(PROCESSBENCH_GSM8K), 1) and samples[-1].group == 399


def test_group_by_prompt_keeps_first_appearance_order(tmp_path):
    recs = [{"prompt": p, "response": f"r{i}", "label": 1} for i, p in enumerate(["B", "A", "B", "C", "A"])]
    groups = group_by_prompt(read_samples(write_jsonl(tmp_path / "g.jsonl", recs)))
    assert list(groups) == ["B", "A", "C"]
    assert [s.response for s in groups["B"]] == ["r0", "r2"]
    assert [s.response for s in groups["A"]] == ["r1", "r4"]


GOOD = {"prompt": "p", "response": "r", "label": 1}
ROLL = {"prompt": "p", "completions": ["a", "b"], "correctness": [True, False]}

BAD_CASES = [  # (id, bad record, field named in the error, text the message must contain)
    ("unknown-shape", {"question": "q", "answer": "a"}, None, "rollouts"),
    ("missing-prompt", {"response": "r", "label": 1}, "prompt", "missing"),
    ("prompt-not-str", {"prompt": 3, "response": "r"}, "prompt", "expected a string"),
    ("empty-prompt", {"prompt": "  ", "response": "r"}, "prompt", "empty"),
    ("empty-response", {"prompt": "p", "response": "\n\t "}, "response", "empty"),
    ("label-2", {"prompt": "p", "response": "r", "label": 2}, "label", "0/1"),
    ("label-str", {"prompt": "p", "response": "r", "label": "yes"}, "label", "string"),
    ("completions-not-list", {**ROLL, "completions": "a"}, "completions", "list of strings"),
    ("completion-not-str", {**ROLL, "completions": ["a", 5]}, "completions[1]", "expected a string"),
    ("empty-completion", {**ROLL, "completions": ["a", "b", "c", " "], "correctness": [1, 1, 1, 0]},
     "completions[3]", "empty"),
    ("correctness-not-list", {**ROLL, "correctness": True}, "correctness", "list of true/false"),
    ("correctness-not-bool", {**ROLL, "correctness": [True, "no"]}, "correctness[1]", "true/false"),
    ("length-mismatch", {**ROLL, "correctness": [True]}, "correctness", "has 1 entries but 'completions' has 2"),
    ("missing-problem", {"steps": ["a"]}, "problem", "'problem' or 'prompt'"),
    ("steps-empty-list", {"problem": "p", "steps": []}, "steps", "non-empty list"),
    ("steps-not-list", {"problem": "p", "steps": "a"}, "steps", "non-empty list"),
    ("empty-step", {"problem": "p", "steps": ["a", "b", ""]}, "steps[2]", "empty"),
    ("final-answer-not-bool", {"problem": "p", "steps": ["a"], "final_answer_correct": "true"},
     "final_answer_correct", "true/false"),
]


@pytest.mark.parametrize("bad, field, text", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_record_names_file_line_and_field(tmp_path, bad, field, text):
    path = write_jsonl(tmp_path / "bad_input.jsonl", [GOOD, "", GOOD, bad])  # the bad record is on line 4
    with pytest.raises(InputError) as err:
        read_samples(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:4: ")
    assert "bad_input.jsonl" in msg and text in msg
    assert err.value.line == 4 and err.value.field == field
    if field:
        assert f"field '{field}'" in msg


def test_require_label_names_the_fields_that_could_provide_it(tmp_path):
    cases = [({"prompt": "p", "response": "r"}, "label", "'label'"),
             ({"prompt": "p", "response": "r", "label": None}, "label", "'label'"),
             ({"prompt": "p", "completions": ["a"]}, "correctness", "'correctness'"),
             ({"problem": "p", "steps": ["a"], "label": 0}, "final_answer_correct", "'correctness'")]
    for i, (rec, field, text) in enumerate(cases):
        path = write_jsonl(tmp_path / f"nolabel{i}.jsonl", [GOOD, rec])
        assert read_samples(path)[1].label is None  # fine when labels are not required
        with pytest.raises(InputError) as err:
            read_samples(path, require_label=True)
        msg = str(err.value)
        assert f"nolabel{i}.jsonl:2:" in msg and f"field '{field}'" in msg and text in msg


def test_length_mismatch_message_gives_both_lengths(tmp_path):
    rec = {"prompt": "p", "completions": ["a", "b", "c"], "correctness": [True, False]}
    with pytest.raises(InputError, match=r"roll\.jsonl:1: field 'correctness': has 2 entries but 'completions' has 3"):
        read_samples(write_jsonl(tmp_path / "roll.jsonl", [rec]))


def test_empty_file_and_blank_lines_only(tmp_path):
    for name, text in [("empty.jsonl", ""), ("blank.jsonl", "\n  \n"), ("empty_array.json", "[]")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=rf"{name}: no records found"):
            read_samples(tmp_path / name)


def test_malformed_json_and_missing_file_come_from_io(tmp_path):
    path = write_jsonl(tmp_path / "broken.jsonl", [GOOD, "{not json"])
    with pytest.raises(InputError, match=r"broken\.jsonl:2: malformed JSON"):
        read_samples(path)
    with pytest.raises(InputError, match="file not found"):
        read_samples(tmp_path / "nope.jsonl")
