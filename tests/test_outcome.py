"""Outcome evaluation on a hand-worked set: AUROC, accuracy at 0, the optimistic best threshold, files, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from implicit_prm.core.errors import InputError
from implicit_prm.core.io import write_jsonl
from implicit_prm.core.results import write_result
from implicit_prm.eval.metrics import OPTIMISTIC
from implicit_prm.eval.outcome import SCHEMA, OutcomeConfig, best_accuracy, run_outcome

# (correct, min score); "last" = -min. 4 correct (A C E G), 3 incorrect (B D F); B and G tie at 0.5.
ROWS = [(True, 2.0), (False, 0.5), (True, -0.5), (False, -1.0), (True, 1.0), (False, -2.0), (True, 0.5)]
#         A            B             C             D              E            F              G
# prm.min, AUROC: 12 (correct, incorrect) pairs; each correct score against the incorrect {0.5, -1, -2}:
#   2.0 -> 3, 1.0 -> 3, 0.5 -> 0.5 (tie) + 2 = 2.5, -0.5 -> 2            total 10.5 / 12 = 0.875
# acc at 0 (score > 0 -> correct): A ok, B wrong, C wrong, D ok, E ok, F ok, G ok         = 5/7
# best t: unique scores -2 -1 -0.5 0.5 1 2; candidates just below -2, midpoints, and 2:
#   below -2 -> all predicted correct: 4/7;  -1.5 -> F right too: 5/7;  -0.75 -> D, F right: 6/7 (best)
#   0 -> 5/7;  0.75 -> 2 + 3 = 5/7;  1.5 -> 1 + 3 = 4/7;  2 -> all predicted wrong: 3/7
# prm.last = -min, AUROC = 1 - 0.875 = 0.125 (ties count 1/2 on both sides)
# acc at 0 (-s > 0, i.e. min < 0 -> correct): B (predicted wrong) and C (predicted correct) right, others not = 2/7
# best t for -s: below the smallest (-2, A) -> all correct: 4/7; any larger t first drops A (correct): 3/7, ... -> 4/7
MIN = {"auroc": 0.875, "acc_at_0": 5 / 7, "threshold": -0.75, "acc": 6 / 7}
LAST = {"auroc": 0.125, "acc_at_0": 2 / 7, "threshold": np.nextafter(-2.0, -np.inf), "acc": 4 / 7}


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def records(nested=False, key="correct"):
    recs = []
    for i, (ok, s) in enumerate(ROWS):
        scores = {"min": s, "last": -s}
        recs.append({"prompt": f"p{i // 2}", "response": f"r{i}", key: ok if key != "label" else int(ok),
                     "scores": {"prm": scores} if nested else scores})
    return recs


def check(method: dict, want: dict):
    assert method["auroc"] == pytest.approx(want["auroc"])
    assert method["acc_at_0"] == pytest.approx(want["acc_at_0"])
    assert method["optimistic"]["threshold"] == want["threshold"]
    assert method["optimistic"]["acc"] == pytest.approx(want["acc"])


@pytest.mark.parametrize("nested,key", [(False, "correct"), (True, "correctness"), (False, "label")])
def test_hand_worked(tmp_path, nested, key, capsys):
    res = run_outcome(OutcomeConfig(input=write(tmp_path / "s.jsonl", records(nested, key))))
    assert (res["schema"], res["n"], res["n_correct"]) == (SCHEMA, 7, 4)
    assert res["score_methods"] == ["prm.min", "prm.last"] and res["optimistic_label"] == OPTIMISTIC
    check(res["methods"]["prm.min"], MIN)
    check(res["methods"]["prm.last"], LAST)
    assert json.loads((tmp_path / "s.outcome.json").read_text()) == json.loads(json.dumps(res))
    saved = json.loads((tmp_path / "s.outcome.json.config.json").read_text())
    assert saved["command"] == "OutcomeConfig" and saved["output"].endswith("s.outcome.json")
    out = capsys.readouterr().out
    assert "prm.min" in out and "0.875" in out and "85.7" in out  # AUROC, 6/7 optimistic accuracy


def test_best_accuracy_edges():
    # one score value: "all correct" (t just below it) vs "all wrong" (t = it); 2 of 3 correct -> all correct
    t, acc = best_accuracy(np.array([1.0, 1.0, 1.0]), np.array([1, 1, 0]))
    assert (t, acc) == (np.nextafter(1.0, -np.inf), pytest.approx(2 / 3))
    # perfectly separated: the midpoint between the classes
    assert best_accuracy(np.array([-3.0, -1.0, 2.0]), np.array([0, 0, 1])) == (0.5, 1.0)
    # scores 0 1 2, labels 0 1 0: below 0 -> 1/3; 0.5 -> 0 ok, 1 ok, 2 wrong = 2/3; 1.5 -> 1/3; 2 (all wrong) -> 2/3
    # a tie between t = 0.5 and t = 2 -> the smallest
    t, acc = best_accuracy(np.array([0.0, 1.0, 2.0]), np.array([0, 1, 0]))
    assert (t, acc) == (0.5, pytest.approx(2 / 3))


def test_one_class_auroc_is_null_and_custom_output(tmp_path):
    recs = [{"prompt": "p", "response": "r", "correct": True, "scores": {"min": s}} for s in (1.0, -1.0)]
    out = tmp_path / "o" / "res.json"
    res = run_outcome(OutcomeConfig(input=write(tmp_path / "s.jsonl", recs), output=str(out), name="ours"))
    assert res["methods"]["ours.min"]["auroc"] is None
    assert res["methods"]["ours.min"]["acc_at_0"] == 0.5
    assert out.exists() and (tmp_path / "o" / "res.json.config.json").exists()


def test_presplit_label_is_not_the_outcome(tmp_path):
    # ProcessBench: label is the first wrong step; the outcome is final_answer_correct
    recs = [{"problem": "P", "steps": ["a", "b"], "label": 1, "final_answer_correct": True, "scores": {"min": 1.0}},
            {"problem": "P", "steps": ["a"], "label": -1, "final_answer_correct": False, "scores": {"min": -1.0}}]
    res = run_outcome(OutcomeConfig(input=write(tmp_path / "pb.jsonl", recs)))
    assert res["n_correct"] == 1 and res["methods"]["prm.min"]["auroc"] == 1.0
    del recs[0]["final_answer_correct"]
    with pytest.raises(InputError) as e:
        run_outcome(OutcomeConfig(input=write(tmp_path / "pb.jsonl", recs)))
    assert (e.value.line, e.value.field) == (1, "correct") and "final_answer_correct" in str(e.value)


@pytest.mark.parametrize("edit,line,field", [
    (lambda r: r[2].pop("correct"), 3, "correct"),
    (lambda r: r[1].update(correct="yes"), 2, "correct"),
    (lambda r: r[3].pop("scores"), 4, "scores"),
    (lambda r: r[4]["scores"].update(min=float("nan")), 5, "scores.min"),
    (lambda r: r[5]["scores"].pop("last"), 6, "scores"),
])
def test_bad_input_names_line_and_field_and_writes_nothing(tmp_path, edit, line, field):
    recs = records()
    edit(recs)
    with pytest.raises(InputError) as e:
        run_outcome(OutcomeConfig(input=write(tmp_path / "s.jsonl", recs)))
    assert (e.value.line, e.value.field) == (line, field)
    assert "s.jsonl" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        run_outcome(OutcomeConfig(input=str(tmp_path / "nope.jsonl")))
    with pytest.raises(InputError, match="no records"):
        run_outcome(OutcomeConfig(input=write(tmp_path / "empty.jsonl", [])))


def test_write_result_writes_output_and_config_atomically(tmp_path):
    out = tmp_path / "sub" / "r.json"
    write_result(out, {"x": 1}, OutcomeConfig(input="in.jsonl", output=str(out)))
    assert json.loads(out.read_text()) == {"x": 1}
    config = json.loads((tmp_path / "sub" / "r.json.config.json").read_text())
    assert config == {"command": "OutcomeConfig", "input": "in.jsonl", "output": str(out), "name": "prm",
                      "n_bootstrap": 1000, "ci_level": 0.95, "seed": 0}

    def rows():  # the output fails half-way: the old files stay whole, no temporary file is left, no config is written
        yield {"a": 1}
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_result(out, rows(), OutcomeConfig(input="other.jsonl"), write=write_jsonl)
    assert json.loads(out.read_text()) == {"x": 1}
    assert json.loads((tmp_path / "sub" / "r.json.config.json").read_text()) == config
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["r.json", "r.json.config.json"]


def test_bootstrap_intervals_over_problems(tmp_path, capsys):
    # records(): prompts p0 (A B), p1 (C D), p2 (E F), p3 (G): 4 problems, resampled with their responses pooled
    res = run_outcome(OutcomeConfig(input=write(tmp_path / "s.jsonl", records())))
    assert (res["n_bootstrap"], res["ci_level"], res["ci_unit"], res["n_units"]) == (1000, 0.95, "problem", 4)
    for m in ("prm.min", "prm.last"):
        r = res["methods"][m]
        assert set(r["ci"]) == {"auroc", "acc_at_0"} and r["ci_dropped"] >= 0
        for k in ("auroc", "acc_at_0"):
            assert r["ci"][k][0] <= r[k] <= r["ci"][k][1]
    assert json.loads((tmp_path / "s.outcome.json").read_text())["methods"]["prm.min"]["ci"] == res["methods"][
        "prm.min"]["ci"]
    out = capsys.readouterr().out
    assert "95% CI" in out and "CI: percentile bootstrap over the 4 problems (1000 resamples)" in out

    no_key = [{k: v for k, v in r.items() if k != "prompt"} for r in records()]
    by_resp = run_outcome(OutcomeConfig(input=write(tmp_path / "r.jsonl", no_key)))
    assert (by_resp["ci_unit"], by_resp["n_units"]) == ("response", 7)
    assert by_resp["methods"]["prm.min"]["auroc"] == res["methods"]["prm.min"]["auroc"]
    capsys.readouterr()
    off = run_outcome(OutcomeConfig(input=write(tmp_path / "o.jsonl", records()), n_bootstrap=0))
    assert off["methods"]["prm.min"]["ci"] is None and "95% CI" not in capsys.readouterr().out


def test_one_class_resamples_are_dropped_and_counted(tmp_path):
    from implicit_prm.eval.metrics import bootstrap_counts

    # problem a: two correct responses (scores 1, -2); problem b: two incorrect ones (0.5, -1).
    # AUROC: 1 beats 0.5 and -1, -2 beats neither: 2/4 = 0.5. A resample with both problems weighs all correct
    # responses by c_a and all incorrect ones by c_b, which cancels: AUROC 0.5 again. A resample of a, a or b, b has
    # one class: dropped. acc at 0: each problem has 1 of 2 right (1 > 0 correct, -2 not; 0.5 > 0 wrong, -1 right),
    # so every resample scores 0.5.
    recs = [{"problem_id": "a", "correct": True, "scores": {"min": 1.0}},
            {"problem_id": "b", "correct": False, "scores": {"min": 0.5}},
            {"problem_id": "a", "correct": True, "scores": {"min": -2.0}},
            {"problem_id": "b", "correct": False, "scores": {"min": -1.0}}]
    res = run_outcome(OutcomeConfig(input=write(tmp_path / "s.jsonl", recs), seed=5))
    r = res["methods"]["prm.min"]
    assert (r["auroc"], r["acc_at_0"]) == (0.5, 0.5)
    assert r["ci"] == {"auroc": [0.5, 0.5], "acc_at_0": [0.5, 0.5]}
    counts = bootstrap_counts(2, 1000, seed=5)  # the same resamples: one class when a problem is drawn twice
    assert r["ci_dropped"] == int((counts[:, 0] != 1).sum()) and 400 < r["ci_dropped"] < 600
