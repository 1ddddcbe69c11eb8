"""`implicit-prm label-mc`: hard and soft Monte-Carlo labels worked by hand, the builtin completer on right and
wrong prefixes, the built-in prompt parser, resume after a kill, the accuracy stats, bad input, and an HF completer
on a tiny random model."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from implicit_prm.cli import main
from implicit_prm.collect import mc_labels
from implicit_prm.collect.completers import BuiltinCompleter, HFCompleter, Prefix
from implicit_prm.collect.mc_labels import McLabelConfig, label_mc, label_stats
from implicit_prm.core.errors import InputError
from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts
from implicit_prm.data.chains import make_problem, parse_prompt
from implicit_prm.data.grading import extract_answer


def write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Fake:
    """Returns fixed completions per prefix length: `right[k]` of the k completions end in the right answer."""

    def __init__(self, right: dict[int, int], fail_after: int | None = None):
        self.right, self.fail_after, self.calls, self.prefixes = right, fail_after, 0, []

    def check(self, prefix):
        pass

    def complete(self, prefixes, k):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # a kill in the middle of the run
        self.prefixes += prefixes
        return [[p.text + ("The answer is 5." if j < self.right[len(p.steps)] else "The answer is 4.")
                 for j in range(k)] for p in prefixes]


def use(monkeypatch, completer):
    monkeypatch.setattr(mc_labels, "make_completer", lambda cfg: completer)
    return completer


HAND = {"prompt": "What is 2 + 3?", "answer": "5", "completions": ["2 + 3 = 5.\n\nCheck: 5 - 3 = 2.\n\nSo 5.",
                                                                    "2 + 3 = 6.\n\nSo 6."],
        "correctness": [True, False], "first_error": [-1, 0]}


@pytest.mark.parametrize("label, want", [("hard", [[1, 0, 1], [1, 0]]), ("soft", [[0.25, 0.0, 1.0], [0.25, 0.0]])])
def test_hand_worked_labels(tmp_path, monkeypatch, label, want):
    """K = 4; after 1 step 1 of 4 completions is right (hard 1, soft 0.25); after 2 steps none (0, 0.0); the last
    step is the response's own correctness (right: 1, wrong: 0), with no completion sampled for it."""
    fake = use(monkeypatch, Fake({1: 1, 2: 0}))
    out = tmp_path / "out.jsonl"
    stats = label_mc(McLabelConfig(input=str(write(tmp_path / "in.jsonl", [HAND])), output=str(out), k=4,
                                   label=label, progress=False))
    (rec,) = read(out)
    assert rec["step_labels"] == want and rec["mc_k"] == 4
    assert rec["mc_values"] == [[0.25, 0.0, 1.0], [0.25, 0.0]]
    assert {k: rec[k] for k in HAND} == HAND  # the input's fields kept
    assert [(p.text, p.steps) for p in fake.prefixes] == [
        ("2 + 3 = 5.\n\n", ["2 + 3 = 5."]), ("2 + 3 = 5.\n\nCheck: 5 - 3 = 2.\n\n", ["2 + 3 = 5.", "Check: 5 - 3 = 2."]),
        ("2 + 3 = 6.\n\n", ["2 + 3 = 6."])]
    assert fake.prefixes[1].seed == "0:0:0:2" and fake.prefixes[2].seed == "0:0:1:1"
    assert stats["n_responses"] == 2 and stats["n_steps"] == 5 and stats["n_completions"] == 3 * 4
    saved = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    assert saved == json.loads(json.dumps(stats)) and (tmp_path / "out.jsonl.config.json").exists()


def test_flat_inputs_become_rollouts_and_presplit_stays_presplit(tmp_path, monkeypatch):
    """Format 2 gives one-completion rollout records (an unlabelled response is graded for its last step); format 3
    keeps its steps, so that training splits the response exactly as the labels were made."""
    use(monkeypatch, Fake({1: 4}))
    recs = [{"prompt": "p", "response": "a\n\nThe answer is 5.", "answer": 5, "id": 1},
            {"problem": "q", "steps": ["a", "The answer is 4."], "final_answer_correct": False, "answer": "5"}]
    out = tmp_path / "o.jsonl"
    label_mc(McLabelConfig(input=str(write(tmp_path / "i.jsonl", recs)), output=str(out), k=2, progress=False))
    a, b = read(out)
    assert a == {"prompt": "p", "completions": ["a\n\nThe answer is 5."], "answer": 5, "id": 1,
                 "correctness": [True], "step_labels": [[1, 1]], "mc_values": [[1.0, 1.0]], "mc_k": 2}
    assert b == {"problem": "q", "steps": ["a", "The answer is 4."], "final_answer_correct": False, "answer": "5",
                 "step_labels": [1, 0], "mc_values": [1.0, 0.0], "mc_k": 2}
    from implicit_prm.data import read_samples
    assert [s.step_labels for s in read_samples(out, require_step_labels=True)] == [[1, 1], [1, 0]]


def test_builtin_prompt_parser_inverts_make_problem():
    rng = random.Random(11)
    for _ in range(2000):
        p = make_problem(rng, 1, 6)
        assert parse_prompt(p.prompt) == p
    with pytest.raises(ValueError, match="template"):
        parse_prompt("What is 2 + 3?")
    with pytest.raises(ValueError, match="operation"):
        parse_prompt("Start with 4. Divide by 2. What is the final result?")


@pytest.fixture(scope="module")
def builtin_records():
    return generate_rollouts(BuiltinDataConfig(output="x", n_problems=30, samples_per_problem=4, seed=5))


def prefix(rec, i, k):
    steps = rec["completions"][i].split("\n\n")
    record = {key: (v[i] if isinstance(v, list) and len(v) == len(rec["completions"]) else v)
              for key, v in rec.items()}
    return Prefix(rec["prompt"], "\n\n".join(steps[:k]) + "\n\n", steps[:k], len(steps), record, f"t:{i}:{k}",
                  ("x.jsonl", 1))


def test_builtin_completer_continues_right_and_wrong_prefixes(builtin_records):
    """A right prefix is kept verbatim and continued by the solver (some continuations right, none erring before
    the prefix ends); a wrong prefix never reaches the right answer: its soft label is exactly 0."""
    completer, n_right, n_wrong, reached = BuiltinCompleter(), 0, 0, 0
    for rec in builtin_records:
        for i, fe in enumerate(rec["first_error"]):
            n = len(rec["completions"][i].split("\n\n"))
            for k in range(1, n):
                p = prefix(rec, i, k)
                (texts,) = completer.complete([p], 8)
                assert all(t.startswith(p.text) for t in texts)
                ok = [extract_answer(t) == str(rec["answer"]) for t in texts]
                if fe == -1 or k <= fe:
                    n_right += 1
                    reached += any(ok)
                else:
                    n_wrong += 1
                    assert not any(ok), (rec["prompt"], p.steps, texts)
                assert completer.complete([p], 8) == [texts]  # seeded: the same again
    assert n_wrong > 30 and n_right > 100 and reached > 0.8 * n_right


def test_builtin_soft_labels_are_zero_after_the_first_error(tmp_path, builtin_records):
    out = tmp_path / "l.jsonl"
    label_mc(McLabelConfig(input=str(write(tmp_path / "d.jsonl", builtin_records)), output=str(out), k=4,
                           label="soft", progress=False))
    for rec in read(out):
        for v, fe, ok in zip(rec["mc_values"], rec["first_error"], rec["correctness"]):
            assert all(x in (0, 0.25, 0.5, 0.75, 1.0) for x in v) and v[-1] == float(ok)
            if fe >= 0:
                assert v[fe:] == [0.0] * (len(v) - fe)


def test_resume_after_a_kill_gives_the_same_output(tmp_path, monkeypatch, builtin_records):
    data = write(tmp_path / "d.jsonl", builtin_records[:6])
    full, again = tmp_path / "full.jsonl", tmp_path / "again.jsonl"
    kw = dict(input=str(data), k=3, progress=False)
    label_mc(McLabelConfig(output=str(full), **kw))  # the builtin completer, uninterrupted

    class Killed(BuiltinCompleter):
        calls = 0

        def complete(self, prefixes, k):
            Killed.calls += 1
            if Killed.calls > 2:
                raise KeyboardInterrupt
            return super().complete(prefixes, k)
    use(monkeypatch, Killed())
    with pytest.raises(KeyboardInterrupt):
        label_mc(McLabelConfig(output=str(again), **kw))
    assert not again.exists() and len(read(tmp_path / "again.jsonl.partial")) == 1 + 2  # header + 2 records
    with open(tmp_path / "again.jsonl.partial", "a") as f:
        f.write('{"index": 2, "rec')  # a torn last line
    Killed.calls = -100
    label_mc(McLabelConfig(output=str(again), **kw))
    assert Killed.calls == -100 + 4  # only the 4 records not done
    assert again.read_text() == full.read_text() and not (tmp_path / "again.jsonl.partial").exists()


def test_accuracy_stats_hand_counted():
    """Response 0 (first_error 1): truth R W W, values .75 .25 0; response 1 (correct): R R R, values .5 0 1.
    hard (x > 0 = right): R W W -> R R W (1 miss), R R R -> R W R (1 false alarm): accuracy 4/6, wrong precision
    1/2, recall 1/2; soft@0.5: R W W -> R W W, R R R -> R W R: 5/6, 2/3, 2/2. Sampled steps (not the last):
    hard RR, WR, RR, RW -> 2/4, 0/1, 0/1; soft RR, WW, RR, RW -> 3/4, 1/2, 1/1. A response without first_error
    counts, without truth."""
    recs = [{"mc_values": [[0.75, 0.25, 0.0], [0.5, 0.0, 1.0]], "first_error": [1, -1]}, {"mc_values": [[1.0]]}]
    s = label_stats(recs, k=4)
    assert (s["n_responses"], s["n_steps"], s["n_sampled_steps"], s["n_completions"]) == (3, 7, 4, 16)
    assert s["n_responses_with_truth"] == 2
    t = s["truth"]
    assert t["hard"]["all"] == {"n": 6, "accuracy": 4 / 6, "wrong_precision": 0.5, "wrong_recall": 0.5}
    assert t["soft@0.5"]["all"] == {"n": 6, "accuracy": 5 / 6, "wrong_precision": 2 / 3, "wrong_recall": 1.0}
    assert t["hard"]["sampled"] == {"n": 4, "accuracy": 0.5, "wrong_precision": 0.0, "wrong_recall": 0.0}
    assert t["soft@0.5"]["sampled"] == {"n": 4, "accuracy": 0.75, "wrong_precision": 0.5, "wrong_recall": 1.0}
    assert label_stats([{"mc_values": [[1.0]]}], k=2)["truth"] is None


def test_bad_input_names_line_and_field(tmp_path, monkeypatch, capsys):
    no_answer = {k: v for k, v in HAND.items() if k != "answer"}
    data = write(tmp_path / "in.jsonl", [HAND, no_answer])
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match=r"in\.jsonl:2: field 'answer': missing"):
        label_mc(McLabelConfig(input=str(data), output=str(out), completer="builtin", progress=False))
    assert main(["label-mc", "--input", str(data), "--output", str(out)]) == 2
    assert "in.jsonl:2: field 'answer'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [data]  # nothing written, not even a partial file
    # the builtin completer needs built-in records
    with pytest.raises(InputError, match=r"in\.jsonl:1: field 'solver'"):
        label_mc(McLabelConfig(input=str(write(data, [HAND])), output=str(out), progress=False))


def test_hf_completer_on_a_tiny_model(tmp_path, tiny_model):
    """End to end with a random tiny LM: the values are fractions of K, the completions extend the prefix."""
    rec = {"prompt": "What is 2 + 3?", "answer": "5", "completions": ["We get 5.\n\nSo it is 5.\n\nDone: 5."],
           "correctness": [True]}
    out = tmp_path / "hf.jsonl"
    cfg = McLabelConfig(input=str(write(tmp_path / "in.jsonl", [rec])), output=str(out), completer="hf",
                        model=tiny_model, k=3, label="soft", max_new_tokens=6, progress=False)
    stats = label_mc(cfg)
    (got,) = read(out)
    assert len(got["mc_values"][0]) == 3 and got["mc_values"][0][-1] == 1.0
    assert all(x in (0.0, 1 / 3, 2 / 3, 1.0) for x in got["mc_values"][0]) and got["step_labels"] == got["mc_values"]
    assert stats["n_completions"] == 2 * 3
    completer = HFCompleter(tiny_model, max_new_tokens=6, batch_size=2)
    p = Prefix(rec["prompt"], "We get 5.\n\n", ["We get 5."], 3, rec, "s", ("x", 1))
    texts = completer.complete([p, p, p], 2)
    assert len(texts) == 3 and all(len(t) == 2 and all(x.startswith(p.text) for x in t) for t in texts)
    label_mc(McLabelConfig(**{**cfg.__dict__, "output": str(tmp_path / "hf2.jsonl")}))
    assert (tmp_path / "hf2.jsonl").read_text() == out.read_text()  # seeded per record: the same again
