"""ProcessBench over splits and PRMBench, on small hand-worked scored files; the benchmark names and PRMBench's
own records as `score` reads them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED

from implicit_prm.cli import main
from implicit_prm.core.errors import ConfigError, InputError, UserError
from implicit_prm.data import read_samples
from implicit_prm.data.sources import input_source
from implicit_prm.eval.prmbench import PRMBenchConfig, prmbench_counts, run_prmbench
from implicit_prm.eval.prmbench import best_prmscore_threshold as best_threshold
from implicit_prm.eval.processbench import ProcessBenchConfig, run_processbench
from implicit_prm.eval.steps import best_step_error_threshold as steps_best_threshold

needs_shared = pytest.mark.skipif(not (SHARED / "processbench").is_dir(), reason=f"shared data not at {SHARED}")
PROB = {"name": "implicit-prm/scored", "version": 1, "scorer": "step_prm", "format": "math-shepherd",
        "scale": "probability"}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pb(split, i, q, label, n_steps=None, **extra):
    n = n_steps or len(q)
    return {"id": f"{split}-{i}", "problem": "p", "steps": [f"s{k}" for k in range(n)], "label": label,
            "q_values": q, "step_rewards": q, "reward_schema": PROB, **extra}


@needs_shared
def test_processbench_names_read_local_files_or_the_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("IMPLICIT_PRM_DATA", str(SHARED))
    samples = read_samples("processbench:gsm8k")
    assert len(samples) == 400 and samples[0].record["id"] == "gsm8k-0" and samples[0].steps
    assert len(read_samples("processbench:math")) == 1000
    with pytest.raises(UserError, match="olympiadbench.json not found"):  # a split the local folder lacks
        read_samples("processbench:olympiadbench")
    with pytest.raises(UserError, match="gsm8k, math, olympiadbench, omnimath"):
        read_samples("processbench:train")
    monkeypatch.delenv("IMPLICIT_PRM_DATA")
    assert input_source("processbench:omnimath") == "hf://Qwen/ProcessBench/omnimath"


def test_processbench_f1_per_split_and_average_at_a_given_threshold(tmp_path):
    """Threshold 0.5 (probabilities). gsm8k: a flags step 1 (label 1, right), b flags none (label -1, right),
    c flags step 0 (label 1, wrong), d flags step 1 (label -1, wrong): acc_err 1/2, acc_ok 1/2, F1 1/2.
    math: e flags step 2 (label 2, right), f none (-1, right), g was cut after 2 of 4 steps and flags step 0 (label
    3, wrong): acc_err 1/2, acc_ok 1, F1 2/3. Average (1/2 + 2/3) / 2 = 7/12. math's scored file came from a
    4-record input: 1 skipped, 1 cut."""
    gsm = _write(tmp_path / "g.jsonl", [_pb("gsm8k", 0, [.9, .2, .8], 1), _pb("gsm8k", 1, [.9, .9], -1),
                                        _pb("gsm8k", 2, [.3, .9], 1), _pb("gsm8k", 3, [.6, .4], -1)])
    src = _write(tmp_path / "math_src.jsonl", [{"id": f"math-{i}"} for i in range(4)])
    math = _write(tmp_path / "m.jsonl", [_pb("math", 0, [.8, .7, .1], 2), _pb("math", 1, [.7], -1),
                                         _pb("math", 2, [.2, .9], 3, n_steps=4, n_steps_total=4)])
    (tmp_path / "m.jsonl.config.json").write_text(json.dumps({"input": str(src)}))
    res = run_processbench(ProcessBenchConfig(inputs=[str(gsm), f"math={math}"], threshold=0.5, n_bootstrap=0,
                                              output=str(tmp_path / "pb.json")))
    g, m = res["splits"]["gsm8k"], res["splits"]["math"]
    assert (g["acc_err"], g["acc_ok"], g["f1"]) == (0.5, 0.5, 0.5) and g["evaluated_on"] == "all"
    assert (m["acc_err"], m["acc_ok"]) == (0.5, 1.0) and m["f1"] == pytest.approx(2 / 3)
    assert (m["n_truncated"], m["n_skipped"], g["n_skipped"]) == (1, 1, None)
    assert res["average_f1"] == pytest.approx(7 / 12)
    assert res["splits_missing"] == ["olympiadbench", "omnimath"]
    assert json.loads((tmp_path / "pb.json").read_text())["average_f1"] == pytest.approx(7 / 12)


def test_processbench_tunes_on_a_seeded_half_of_gsm8k_and_reports_the_other(tmp_path):
    rows = [_pb("gsm8k", 0, [.9, .2], 1), _pb("gsm8k", 1, [.9, .8], -1), _pb("gsm8k", 2, [.4, .9], 0),
            _pb("gsm8k", 3, [.7, .6], -1), _pb("gsm8k", 4, [.95, .3], 1), _pb("gsm8k", 5, [.85, .75], -1)]
    gsm = _write(tmp_path / "g.jsonl", rows)
    math = _write(tmp_path / "m.jsonl", [_pb("math", 0, [.8, .1], 1), _pb("math", 1, [.9], -1)])
    res = run_processbench(ProcessBenchConfig(inputs=[str(gsm), str(math)], seed=3, n_bootstrap=0,
                                              output=str(tmp_path / "pb.json")))
    perm = np.random.default_rng(3).permutation(6)
    tune = sorted(perm[:3])
    want_t, _ = steps_best_threshold([rows[i]["q_values"] for i in tune], [rows[i]["label"] for i in tune])
    assert res["threshold"] == want_t and res["threshold_from"] == "tune_split"
    g = res["splits"]["gsm8k"]
    assert g["evaluated_on"] == "other half (3 of 6)" and g["n_err"] + g["n_ok"] == 3
    assert res["splits"]["math"]["n_err"] + res["splits"]["math"]["n_ok"] == 2
    with pytest.raises(ConfigError, match="no scored gsm8k split"):
        run_processbench(ProcessBenchConfig(inputs=[str(math)], output=str(tmp_path / "x.json")))


def test_prmbench_counts_on_a_worked_case():
    """valid [T, T, F], predicted [T, F, F]: TP 1, FN 1, TN 1, FP 0; P = 1, R = 1/2, F1 = 2/3; P' = 1/2, R' = 1,
    negative F1 = 2/3; PRMScore 2/3."""
    c = prmbench_counts([True, False, False], [True, True, False])
    assert (c["TP"], c["FP"], c["TN"], c["FN"]) == (1, 0, 1, 1)
    assert c["f1"] == pytest.approx(2 / 3) and c["negative_f1"] == pytest.approx(2 / 3)
    assert c["prmscore"] == pytest.approx(2 / 3)
    all_bad = prmbench_counts([False, False], [True, True])  # precision 0/0, yet F1 0 (PRMBench: 0 too)
    assert all_bad["precision"] is None and all_bad["f1"] == 0
    assert all_bad["negative_recall"] is None and all_bad["negative_f1"] == 0 and all_bad["prmscore"] == 0
    none_bad = prmbench_counts([True, True], [True, True])
    assert none_bad["negative_f1"] is None and none_bad["prmscore"] is None  # PRMBench's -1


def test_prmbench_threshold_tuning_picks_the_best_prmscore():
    """values 0.9, 0.6 valid; 0.4, 0.7 erroneous. t = 0.4: PRMScore 1/3; 0.6: (4/5 + 2/3) / 2 = 11/15; 0.7: 1/2;
    0.9: (2/3 + 4/5) / 2 = 11/15; above: 1/3. Ties go to the smaller threshold: 0.6."""
    assert best_threshold(np.array([.9, .6, .4, .7]), np.array([True, True, False, False])) == 0.6


@needs_shared
def test_prmbench_on_its_own_records(tmp_path):
    """The three shared records as `score` reads them (steps = modified_process), scored by hand: counterfactual
    (errors 6-8 of 8) [.9 .9 .9 .9 .2 .8 .1 .1] -> TP 4, FN 1, FP 1, TN 2; step_contradiction (errors 4, 5 of 5)
    [.9 .9 .9 .3 .6] -> TP 3, TN 1, FP 1; circular: every step .9."""
    path = SHARED / "prmbench_samples" / "samples.jsonl"
    samples = read_samples(path)
    recs = [s.record for s in samples]
    assert [s.steps for s in samples] == [r["modified_process"] for r in recs]
    assert [s.prompt for s in samples] == [r["modified_question"] for r in recs]
    kinds = [r["classification"] for r in recs]
    assert kinds == ["counterfactual", "step_contradiction", "circular"]
    values = [[.9, .9, .9, .9, .2, .8, .1, .1], [.9, .9, .9, .3, .6], [.9] * len(recs[2]["modified_process"])]
    scored = _write(tmp_path / "s.jsonl", [{**r, "step_rewards": v, "reward_schema": PROB}
                                          for r, v in zip(recs, values)])
    res = run_prmbench(PRMBenchConfig(input=str(scored)))
    cf, sc = res["per_classification"]["counterfactual"], res["per_classification"]["step_contradiction"]
    assert (cf["TP"], cf["FN"], cf["FP"], cf["TN"]) == (4, 1, 1, 2)
    assert (sc["TP"], sc["FN"], sc["FP"], sc["TN"]) == (3, 0, 1, 1)
    circ = res["per_classification"]["circular"]
    n_err = len(recs[2]["error_steps"])
    assert circ["FP"] == n_err and circ["TN"] == 0 and circ["negative_f1"] == 0 and circ["negative_precision"] is None
    t = res["total"]
    assert (t["TP"], t["FN"], t["FP"], t["TN"]) == (cf["TP"] + sc["TP"] + circ["TP"], 1, 2 + n_err, 3)
    assert res["threshold"] == 0.5 and res["threshold_from"] == "given"
    with pytest.raises(ConfigError, match="never tuned on the evaluated file"):
        run_prmbench(PRMBenchConfig(input=str(scored), tune_on=str(scored)))


@pytest.mark.parametrize("errors", [[-1], [0], [1.5], ["2"], [True], 2, None])
def test_prmbench_bad_records_name_the_line_and_field(tmp_path, capsys, errors):
    row = {"modified_question": "q", "modified_process": ["a", "b"], "error_steps": errors, "classification": "x",
           "step_rewards": [.5, .5]}
    bad = _write(tmp_path / "bad.jsonl", [row])
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'error_steps'.*1-based step indices"):
        run_prmbench(PRMBenchConfig(input=str(bad)))
    assert main(["eval", "prmbench", "--input", str(bad)]) == 2
    assert not (tmp_path / "bad.prmbench.json").exists()


def test_prmbench_error_steps_past_the_last_step_match_no_step(tmp_path, capsys):
    """As PRMBench's evaluation (it loops over the steps): an error index past the last step labels no step.
    Threshold 0.5 on the probabilities, errors 1-based:
      line 1 deception, errors [3] of 4, [.9 .8 .3 .6]: valid T T F T, predicted T T F T -> TP 3, TN 1
      line 2 deception, errors [2, 5] of 3 (5 is past step 3), [.7 .6 .2]: valid T F T, predicted T T F
             -> TP 1, FP 1, FN 1
      line 3 confidence, errors [2] of 2, [.4 .1]: valid T F, predicted F F -> FN 1, TN 1
    total TP 4, FP 1, TN 2, FN 2: F1 = 2*4 / (8 + 1 + 2) = 8/11, negative F1 = 2*2 / (4 + 2 + 1) = 4/7,
      PRMScore = (8/11 + 4/7) / 2 = 50/77
    deception TP 4, FP 1, TN 1, FN 1: F1 = 8 / (8 + 2) = 4/5, negative F1 = 2 / (2 + 2) = 1/2, PRMScore 13/20
    confidence TP 0, FP 0, TN 1, FN 1: F1 = 0 / (0 + 1) = 0 (precision 0/0), negative F1 = 2 / (2 + 1) = 2/3,
      PRMScore 1/3
    (Refusing line 2 would drop it; clamping 5 to step 3 would make step 3 erroneous: TN 1, FN 0 there.)"""
    rows = [("deception", [3], [.9, .8, .3, .6]), ("deception", [2, 5], [.7, .6, .2]), ("confidence", [2], [.4, .1])]
    path = _write(tmp_path / "pb.jsonl", [
        {"idx": f"r{i}", "modified_question": "q", "modified_process": [f"s{k}" for k in range(len(v))],
         "error_steps": e, "classification": kind, "step_rewards": v, "reward_schema": PROB}
        for i, (kind, e, v) in enumerate(rows)])
    res = run_prmbench(PRMBenchConfig(input=str(path)))
    t, dec, conf = res["total"], res["per_classification"]["deception"], res["per_classification"]["confidence"]
    assert (t["TP"], t["FP"], t["TN"], t["FN"], t["n_steps"]) == (4, 1, 2, 2, 9) and res["n_records"] == 3
    assert (t["f1"], t["negative_f1"], t["prmscore"]) == pytest.approx((8 / 11, 4 / 7, 50 / 77))
    assert (dec["TP"], dec["FP"], dec["TN"], dec["FN"]) == (4, 1, 1, 1)
    assert (dec["f1"], dec["negative_f1"], dec["prmscore"]) == pytest.approx((4 / 5, 1 / 2, 13 / 20))
    assert (conf["TP"], conf["FP"], conf["TN"], conf["FN"]) == (0, 0, 1, 1) and conf["precision"] is None
    assert (conf["f1"], conf["negative_f1"], conf["prmscore"]) == pytest.approx((0, 2 / 3, 1 / 3))
    assert res["n_records_out_of_range_error_steps"] == 1
    past = [{"line": 2, "idx": "r1", "classification": "deception", "n_steps": 3, "error_steps": [5]}]
    assert res["out_of_range_error_steps"] == past and res["tune_on_out_of_range_error_steps"] is None
    on_disk = json.loads((tmp_path / "pb.prmbench.json").read_text())
    assert on_disk["out_of_range_error_steps"] == past
    out = capsys.readouterr().out
    assert out.count("error_steps past their last step") == 1
    assert "1 of 3 records have error_steps past their last step" in out and "line 2 (r1: [5] of 3 steps)" in out
    assert main(["eval", "prmbench", "--input", str(path), "--output", str(tmp_path / "cli.json")]) == 0
    tune = _write(tmp_path / "tune.jsonl", [json.loads(line) for line in path.read_text().splitlines()])
    tuned = run_prmbench(PRMBenchConfig(input=str(path), tune_on=str(tune), output=str(tmp_path / "t.json")))
    assert tuned["tune_on_out_of_range_error_steps"] == past
