"""Bad input to `train` and `score`: exit code 2, an error naming file, line and field, no traceback, no output."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from implicit_prm.cli import main

GOOD = {"prompt": "Start with 2. Add 3. What is the result?",
        "completions": ["Step 1: 2 + 3 = 5\n\nThe answer is 5.", "Step 1: 2 + 3 = 6\n\nThe answer is 6."],
        "correctness": [True, False]}
BAD_LINE = 4  # two good records and a blank line come first: line numbers count physical lines

# (case, bad record as a JSON line, the field the error must name, a phrase the error must contain)
CASES = [
    ("malformed_json", '{"prompt": "p", "completions": ["a", "b"', None, "malformed JSON"),
    ("not_an_object", '["p", "a"]', None, "expected a JSON object"),
    ("missing_prompt", {"completions": ["a", "b"], "correctness": [True, False]}, "prompt", "missing"),
    ("missing_response", {"prompt": "p", "label": 1}, None, '"response": str'),
    ("prompt_not_string", {"prompt": 42, "completions": ["a", "b"], "correctness": [True, False]}, "prompt",
     "expected a string, found number 42"),
    ("completions_not_list", {"prompt": "p", "completions": "a", "correctness": [True]}, "completions",
     "expected a non-empty list of strings, found string"),
    ("completion_not_string", {"prompt": "p", "completions": ["a", 7], "correctness": [True, False]},
     "completions[1]", "expected a string"),
    ("correctness_mistyped", {"prompt": "p", "completions": ["a", "b"], "correctness": [True, "yes"]},
     "correctness[1]", "expected true/false or 0/1"),
    ("label_mistyped", {"prompt": "p", "response": "r", "label": 2}, "label", "expected true/false or 0/1"),
    ("lengths_differ", {"prompt": "p", "completions": ["a", "b", "c"], "correctness": [True, False]},
     "correctness", "has 2 entries but 'completions' has 3"),
    ("empty_completion", {"prompt": "p", "completions": ["a", ""], "correctness": [True, False]},
     "completions[1]", "empty"),
    ("blank_response", {"prompt": "p", "response": "  \n ", "label": 0}, "response", "empty"),
    ("empty_steps", {"problem": "p", "steps": [], "final_answer_correct": True}, "steps", "non-empty list"),
]
TRAIN_ONLY = [  # a missing outcome label is fine when scoring, an error when training
    ("missing_correctness", {"prompt": "p", "completions": ["a", "b"]}, "correctness", "missing outcome label"),
    ("missing_label", {"prompt": "p", "response": "r"}, "label", "missing outcome label"),
]


def write_data(path: Path, bad=None, n_good: int = 2) -> Path:
    """n_good good rollout records, a blank line, then the bad record (a dict or a raw line) on BAD_LINE."""
    lines = [json.dumps(GOOD)] * n_good + [""]
    if bad is not None:
        lines.append(bad if isinstance(bad, str) else json.dumps(bad))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_args(data, out: Path, model: str, cache: Path, *extra) -> list[str]:
    return ["train", "--data", str(data), "--output", str(out), "--model", model, "--dtype", "fp32",
            "--no-progress", "--ref-cache", str(cache), "--batch-size", "2", "--max-steps", "1", *map(str, extra)]


def score_args(data, out: Path, prm: str, ref: str, cache: Path, *extra) -> list[str]:
    return ["score", "--input", str(data), "--output", str(out), "--prm", prm, "--ref", ref, "--dtype", "fp32",
            "--no-progress", "--ref-cache", str(cache), *map(str, extra)]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, where: str, *phrases: str, tmp: Path | None = None) -> None:
    """Exit code 2, no traceback, `where` (file:line) in stderr, and each phrase outside the temp paths (whose
    names hold the test's name, which could match a phrase by accident)."""
    assert code == 2, err
    assert "Traceback" not in err
    assert where in err, f"{where!r} not in stderr:\n{err}"
    scrubbed = err.replace(str(tmp), "<tmp>") if tmp else err
    for phrase in phrases:
        assert phrase in scrubbed, f"{phrase!r} not in stderr:\n{err}"


def assert_no_train_output(out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def assert_no_score_output(out: Path) -> None:
    leftovers = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    assert leftovers == [], leftovers


@pytest.mark.parametrize("case,bad,field,phrase", CASES + TRAIN_ONLY, ids=[c[0] for c in CASES + TRAIN_ONLY])
def test_train_bad_record(capsys, tmp_path, tiny_model, case, bad, field, phrase):
    data = write_data(tmp_path / "bad.jsonl", bad)
    out = tmp_path / "run"
    code, _, err = run(capsys, train_args(data, out, tiny_model, tmp_path / "rc.sqlite"))
    fields = [f"field '{field}'"] if field else []
    assert_user_error(code, err, f"{data}:{BAD_LINE}: ", phrase, *fields, tmp=tmp_path)
    assert_no_train_output(out)


@pytest.mark.parametrize("case,bad,field,phrase", CASES, ids=[c[0] for c in CASES])
def test_score_bad_record(capsys, tmp_path, tiny_model, tiny_model_b, case, bad, field, phrase):
    data = write_data(tmp_path / "bad.jsonl", bad)
    out = tmp_path / "scored" / "out.jsonl"
    code, _, err = run(capsys, score_args(data, out, tiny_model_b, tiny_model, tmp_path / "rc.sqlite"))
    fields = [f"field '{field}'"] if field else []
    assert_user_error(code, err, f"{data}:{BAD_LINE}: ", phrase, *fields, tmp=tmp_path)
    assert_no_score_output(out)


def test_missing_and_empty_files(capsys, tmp_path, tiny_model, tiny_model_b):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    code, _, err = run(capsys, train_args(empty, tmp_path / "run", tiny_model, tmp_path / "rc.sqlite"))
    assert_user_error(code, err, f"{empty}: ", "no records found", tmp=tmp_path)
    assert_no_train_output(tmp_path / "run")
    missing = tmp_path / "nope.jsonl"
    out = tmp_path / "scored" / "out.jsonl"
    code, _, err = run(capsys, score_args(missing, out, tiny_model_b, tiny_model, tmp_path / "rc.sqlite"))
    assert_user_error(code, err, f"{missing}: ", "file not found", tmp=tmp_path)
    assert_no_score_output(out)


# ----------------------------------------------------------------------------- overlong prompts

LONG_PROMPT = {"prompt": "Think about this: " + "word " * 120, "completions": ["Step 1: yes\n\nDone.", "No."],
               "correctness": [True, False]}
MAX_LEN = 100  # the good records take ~60 tokens with the chat template; the long prompt alone ~160


def test_train_overlong_prompt_is_an_error_by_default(capsys, tmp_path, tiny_model):
    data = write_data(tmp_path / "long.jsonl", LONG_PROMPT)
    out = tmp_path / "run"
    code, _, err = run(capsys, train_args(data, out, tiny_model, tmp_path / "rc.sqlite", "--max-length", MAX_LEN))
    assert_user_error(code, err, f"{data}:{BAD_LINE}: field '", f"exceed max_length {MAX_LEN}",
                      "the prompt alone leaves no room", "--overlong skip", tmp=tmp_path)
    assert_no_train_output(out)


def test_score_overlong_prompt_error_skip_and_truncate(capsys, tmp_path, tiny_model, tiny_model_b):
    data = write_data(tmp_path / "long.jsonl", LONG_PROMPT)
    out = tmp_path / "scored" / "out.jsonl"
    cache = tmp_path / "rc.sqlite"
    code, _, err = run(capsys, score_args(data, out, tiny_model_b, tiny_model, cache, "--max-length", MAX_LEN))
    assert_user_error(code, err, f"{data}:{BAD_LINE}: field '", f"exceed max_length {MAX_LEN}", "prompt alone",
                      tmp=tmp_path)
    assert_no_score_output(out)

    # truncate cannot cut a prompt that alone is too long: still an error, saying why
    code, _, err = run(capsys, score_args(data, out, tiny_model_b, tiny_model, cache, "--max-length", MAX_LEN,
                                          "--overlong", "truncate"))
    assert_user_error(code, err, f"{data}:{BAD_LINE}: field '", "the prompt alone leaves no room", tmp=tmp_path)
    assert_no_score_output(out)

    # skip: the two responses of the long record are left out, and the run says so
    code, stdout, err = run(capsys, score_args(data, out, tiny_model_b, tiny_model, cache, "--max-length", MAX_LEN,
                                               "--overlong", "skip"))
    assert code == 0, err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 4 and all(r["prompt"] == GOOD["prompt"] for r in recs)
    assert "2 over max_length left out" in stdout


def test_score_overlong_response_truncated_and_marked(capsys, tmp_path, tiny_model, tiny_model_b):
    long_resp = "\n\n".join(f"Step {k}: {k} + 1 = {k + 1}" for k in range(1, 40))
    data = write_data(tmp_path / "long.jsonl", {"prompt": "Count.", "response": long_resp, "label": 1})
    out = tmp_path / "scored" / "out.jsonl"
    code, _, err = run(capsys, score_args(data, out, tiny_model_b, tiny_model, tmp_path / "rc.sqlite",
                                          "--max-length", MAX_LEN, "--overlong", "truncate"))
    assert code == 0, err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("truncated", False) for r in recs] == [False] * 4 + [True]
    last = recs[-1]
    # steps wholly past the cut are dropped (not scored as 0, which would distort min/last/mean)
    assert len(last["step_rewards"]) == len(last["step_spans"]) < 39 and last["n_steps_total"] == 39
    assert all(r != 0.0 for r in last["step_rewards"])


def test_train_overlong_skip_says_so(capsys, tmp_path, tiny_model):
    data = write_data(tmp_path / "long.jsonl", LONG_PROMPT)
    out = tmp_path / "run"
    code, stdout, err = run(capsys, train_args(data, out, tiny_model, tmp_path / "rc.sqlite",
                                               "--max-length", MAX_LEN, "--overlong", "skip"))
    assert code == 0, err
    assert json.loads((out / "data_stats.json").read_text())["n_skipped_overlong"] == 2
    said = (stdout + err).replace(str(tmp_path), "<tmp>")
    assert "max_length" in said or "overlong" in said


# ----------------------------------------------------------------------------- tokenizer mismatch

@pytest.fixture(scope="module")
def mismatched_model(tmp_path_factory, tiny_model) -> str:
    """A copy of tiny_model whose tokenizer has one added token."""
    from transformers import AutoTokenizer

    copy = tmp_path_factory.mktemp("mismatch") / "tiny_plus"
    shutil.copytree(tiny_model, copy)
    tok = AutoTokenizer.from_pretrained(copy)
    tok.add_tokens(["<zzz>"])
    tok.save_pretrained(copy)
    return str(copy)


def test_train_tokenizer_mismatch(capsys, tmp_path, tiny_model, mismatched_model):
    data = write_data(tmp_path / "ok.jsonl")
    out = tmp_path / "run"
    code, _, err = run(capsys, train_args(data, out, tiny_model, tmp_path / "rc.sqlite", "--ref", mismatched_model))
    assert_user_error(code, err, "error: tokenizer mismatch", f"'{tiny_model}'", f"'{mismatched_model}'", "<zzz>")
    assert_no_train_output(out)


@pytest.mark.subprocess
def test_score_tokenizer_mismatch_subprocess(tmp_path, tiny_model_b, mismatched_model):
    """The real process: exit code 2, the message on stderr naming both models, no traceback, no output."""
    data = write_data(tmp_path / "ok.jsonl")
    out = tmp_path / "scored" / "out.jsonl"
    argv = score_args(data, out, tiny_model_b, mismatched_model, tmp_path / "rc.sqlite")
    proc = subprocess.run([sys.executable, "-m", "implicit_prm", *argv], capture_output=True, text=True, timeout=300)
    assert_user_error(proc.returncode, proc.stderr, "implicit-prm score: error: tokenizer mismatch",
                      f"'{tiny_model_b}'", f"'{mismatched_model}'", "<zzz>")
    assert_no_score_output(out)


@pytest.mark.subprocess
def test_train_malformed_json_subprocess(tmp_path, tiny_model):
    data = write_data(tmp_path / "bad.jsonl", '{"prompt": "p", "completions": ["a", "b"], "correctness": [true,')
    out = tmp_path / "run"
    argv = train_args(data, out, tiny_model, tmp_path / "rc.sqlite")
    proc = subprocess.run([sys.executable, "-m", "implicit_prm", *argv], capture_output=True, text=True, timeout=300)
    assert_user_error(proc.returncode, proc.stderr, f"implicit-prm train: error: {data}:{BAD_LINE}: malformed JSON")
    assert proc.stdout == ""
    assert_no_train_output(out)
