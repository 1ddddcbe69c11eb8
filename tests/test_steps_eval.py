"""Step-error detection (ProcessBench style): predictions, metrics and thresholds worked by hand; real file shapes."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from implicit_prm.core.errors import ConfigError, InputError
from implicit_prm.eval.steps import (
    OPTIMISTIC,
    SCHEMA,
    StepsConfig,
    first_error_prediction,
    processbench_metrics,
    run_steps,
)
from implicit_prm.eval.steps import best_step_error_threshold as best_threshold

PROCESSBENCH_GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "processbench" / "gsm8k.json"


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def builtin(probs, first_error):
    """A built-in style scored record whose sigmoid(q_values) are `probs`."""
    return {"q_values": [logit(p) for p in probs], "step_rewards": [0.0] * len(probs), "first_error": first_error}


def processbench(probs, label):
    """A ProcessBench style scored record (steps + label) whose sigmoid(q_values) are `probs`."""
    return {"steps": [f"step {i}" for i in range(len(probs))], "label": label,
            "q_values": [logit(p) for p in probs], "step_rewards": [0.0] * len(probs)}


def test_first_error_prediction():
    assert first_error_prediction([0.9, 0.6, 0.3, 0.2], 0.5) == 2
    assert first_error_prediction([0.9, 0.6, 0.3, 0.2], 0.1) == -1
    assert first_error_prediction([0.9, 0.6, 0.3, 0.2], 0.95) == 0
    assert first_error_prediction([0.5, 0.4], 0.5) == 1  # strictly below: 0.5 is not flagged
    assert first_error_prediction([0.7, 0.2, 0.9], 0.3) == 1  # a later recovery does not matter


def test_processbench_metrics_hand_worked():
    # 3 erroneous samples (labels 1, 0, 2) and 2 correct ones (-1, -1)
    # err: pred 1 = 1 right, pred -1 != 0 wrong, pred 0 != 2 wrong -> acc_err 1/3
    # ok:  pred -1 right, pred 2 wrong -> acc_ok 1/2;  F1 = 2 (1/3)(1/2) / (1/3 + 1/2) = (1/3) / (5/6) = 0.4
    m = processbench_metrics([1, -1, 0, -1, 2], [1, 0, 2, -1, -1])
    assert m == pytest.approx({"acc_err": 1 / 3, "acc_ok": 0.5, "f1": 0.4, "n_err": 3, "n_ok": 2})
    assert processbench_metrics([-1, 0], [0, -1])["f1"] == 0.0  # both accuracies 0
    only_err = processbench_metrics([0], [0])
    assert only_err["acc_ok"] is None and only_err["f1"] is None


# s0 = [0.8, 0.3] label 1; s1 = [0.6, 0.7] label -1; s2 = [0.2, 0.9] label 0.
# Running minima: [0.8, 0.3], [0.6, 0.6], [0.2, 0.2] -> values 0.2, 0.3, 0.6, 0.8;
# candidates 0.2, 0.25, 0.45, 0.7, just above 0.8:
#   t=0.2 : preds -1, -1, -1 -> acc_err 0/2, acc_ok 1   -> F1 0
#   t=0.25: preds -1, -1,  0 -> acc_err 1/2, acc_ok 1   -> F1 2/3
#   t=0.45: preds  1, -1,  0 -> acc_err 1,   acc_ok 1   -> F1 1   (best)
#   t=0.7 : preds  1,  0,  0 -> acc_err 1,   acc_ok 0   -> F1 0
#   t=0.8+: preds  0,  0,  0 -> acc_err 1/2, acc_ok 0   -> F1 0
TINY = ([[0.8, 0.3], [0.6, 0.7], [0.2, 0.9]], [1, -1, 0])


def test_best_threshold_hand_worked():
    t, m = best_threshold(*TINY)
    assert t == pytest.approx(0.45)
    assert m == pytest.approx({"acc_err": 1.0, "acc_ok": 1.0, "f1": 1.0, "n_err": 2, "n_ok": 1})


def test_best_threshold_tie_takes_smallest():
    # values {0.5}: t=0.5 -> preds -1, -1 (F1 0); t just above 0.5 -> preds 0, 0 (F1 0): a tie, the smaller wins
    t, m = best_threshold([[0.5], [0.5]], [0, -1])
    assert t == 0.5 and m["f1"] == 0.0


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    signals = [rng.random(rng.integers(1, 8)).round(2) for _ in range(60)]  # rounding makes ties
    labels = [int(rng.integers(-1, len(s))) for s in signals]
    t, m = best_threshold(signals, labels)
    values = np.unique(np.concatenate(signals))
    grid = np.concatenate([values, (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    brute = max(processbench_metrics([first_error_prediction(s, g) for s in signals], labels)["f1"] for g in grid)
    assert m["f1"] == pytest.approx(brute)
    assert m == processbench_metrics([first_error_prediction(s, t) for s in signals], labels)
    with pytest.raises(ValueError, match="both"):
        best_threshold(signals[:3], [0, 0, 0])


def test_tune_on_applies_the_tuned_threshold(tmp_path, capsys):
    tune = write(tmp_path / "tune.jsonl", [builtin(p, l) for p, l in zip(*TINY)])  # tuned threshold 0.45
    # at 0.45: e0 [0.5, 0.4] -> 1 right; e1 [0.42] -> 0 wrong; e2 [0.9, 0.1] -> 1 wrong  => acc_err 1, acc_ok 0, F1 0
    # tuned on this file instead: t = 0.41 gives 1, -1, 1 -> acc_err 1, acc_ok 1/2, F1 2/3 (the optimistic number)
    test = write(tmp_path / "test.jsonl", [processbench([0.5, 0.4], 1), processbench([0.42], -1),
                                           processbench([0.9, 0.1], -1)])
    res = run_steps(StepsConfig(input=test, tune_on=tune))
    assert res["threshold_from"] == "tune_on" and res["threshold"] == pytest.approx(0.45)
    assert res["tuned"]["f1"] == pytest.approx(1.0)
    ci, dropped = res["evaluated"].pop("ci"), res["evaluated"].pop("ci_dropped")
    assert res["evaluated"] == pytest.approx({"acc_err": 1.0, "acc_ok": 0.0, "f1": 0.0, "n_err": 1, "n_ok": 2})
    # every resample that has both classes scores acc_err 1, acc_ok 0, F1 0: zero-width intervals
    assert ci == {"acc_err": [1.0, 1.0], "acc_ok": [0.0, 0.0], "f1": [0.0, 0.0]}
    # dropped: no erroneous sample drawn in 3 draws, (2/3)^3 = 0.30 of 1000; no correct one, (1/3)^3 = 0.04
    assert 230 < dropped["acc_err"] < 360 and 15 < dropped["acc_ok"] < 60
    assert dropped["f1"] == dropped["acc_err"] + dropped["acc_ok"]
    opt = res["optimistic"]
    assert opt["label"] == OPTIMISTIC and opt["threshold"] == pytest.approx(0.41) and opt["f1"] == pytest.approx(2 / 3)
    on_disk = json.loads((tmp_path / "test.steps.json").read_text())
    assert on_disk["schema"] == SCHEMA and on_disk["n"] == 3
    assert json.loads((tmp_path / "test.steps.json.config.json").read_text())["command"] == "StepsConfig"
    assert OPTIMISTIC in capsys.readouterr().out


def test_given_threshold_and_step_reward_signal(tmp_path):
    recs = [{"q_values": [0.0, 0.0], "step_rewards": [1.0, -0.5], "first_error": 1},
            {"q_values": [0.0], "step_rewards": [0.2], "first_error": -1}]
    path = write(tmp_path / "r.jsonl", recs)
    res = run_steps(StepsConfig(input=path, threshold=0.0, signal="step_reward", output=str(tmp_path / "o.json")))
    assert res["evaluated"]["ci"] == {"acc_err": [1.0, 1.0], "acc_ok": [1.0, 1.0], "f1": [1.0, 1.0]}
    del res["evaluated"]["ci"], res["evaluated"]["ci_dropped"]
    assert res["evaluated"] == pytest.approx({"acc_err": 1.0, "acc_ok": 1.0, "f1": 1.0, "n_err": 1, "n_ok": 1})
    assert (tmp_path / "o.json").exists()
    with pytest.raises(ConfigError, match="at most one"):
        StepsConfig(input=path, threshold=0.5, tune_on=path)


def test_split_half_deterministic_by_seed(tmp_path):
    rng = np.random.default_rng(1)
    recs = []
    for _ in range(21):
        n = int(rng.integers(1, 6))
        label = -1 if rng.random() < 0.5 else int(rng.integers(0, n))
        recs.append(builtin(rng.uniform(0.05, 0.95, n).tolist(), label))
    path = write(tmp_path / "s.jsonl", recs)
    a = run_steps(StepsConfig(input=path, split_half=True, seed=7))
    b = run_steps(StepsConfig(input=path, split_half=True, seed=7))
    assert a == b
    assert a["split"] == {"seed": 7, "n_tune": 10, "n_eval": 11}
    assert a["evaluated"]["n_err"] + a["evaluated"]["n_ok"] == 11
    assert a["tuned"]["n_err"] + a["tuned"]["n_ok"] == 10
    c = run_steps(StepsConfig(input=path, split_half=True, seed=8))
    assert c["split"]["n_eval"] == 11 and (c["tuned"], c["evaluated"]) != (a["tuned"], a["evaluated"])


@pytest.mark.parametrize("rec, match", [
    ({"step_rewards": [0.1], "first_error": -1}, ":2: field 'q_values': missing"),
    ({"q_values": [0.1, 0.2], "first_error": 2}, ":2: field 'first_error': expected -1 or a step index 0..1"),
    ({"q_values": [0.1], "steps": ["a", "b"], "label": 0}, ":2: field 'q_values': has 1 values but 'steps' has 2"),
    ({"q_values": [0.1, float("nan")], "first_error": 0}, r":2: field 'q_values\[1\]': expected a finite number"),
    ({"q_values": [0.1], "steps": ["a"]}, ":2: field 'label': missing"),
])
def test_bad_input_names_line_and_field(tmp_path, rec, match):
    path = write(tmp_path / "bad.jsonl", [builtin([0.5], -1), rec])
    with pytest.raises(InputError, match=match):
        run_steps(StepsConfig(input=path, threshold=0.5))


@pytest.mark.skipif(not PROCESSBENCH_GSM8K.exists(), reason="shared ProcessBench data not present")
def test_processbench_gsm8k_loads(tmp_path):
    rng = np.random.default_rng(0)
    recs = json.loads(PROCESSBENCH_GSM8K.read_text())
    for r in recs:  # synthetic q-values: only shapes and label counts are checked
        r["q_values"] = rng.normal(size=len(r["steps"])).tolist()
        r["step_rewards"] = np.diff(r["q_values"], prepend=0.0).tolist()
    path = write(tmp_path / "gsm8k.scored.jsonl", recs)
    res = run_steps(StepsConfig(input=path, threshold=0.5))
    assert (res["n"], res["n_err"], res["n_ok"]) == (400, 207, 193)
    assert (res["evaluated"]["n_err"], res["evaluated"]["n_ok"]) == (207, 193)
    assert res["optimistic"]["f1"] >= res["evaluated"]["f1"]
    half = run_steps(StepsConfig(input=path, split_half=True))
    assert half["split"]["n_tune"] == half["split"]["n_eval"] == 200


def steps_records(n=40, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        label = -1 if rng.random() < 0.5 else int(rng.integers(0, k))
        probs = rng.uniform(0.55, 0.95, size=k)
        probs[max(label, 0)] = rng.uniform(0.05, 0.7) if label >= 0 else rng.uniform(0.35, 0.95)  # some false alarms
        recs.append(processbench(probs.tolist(), label))
    return recs


def test_bootstrap_intervals_at_the_fixed_threshold(tmp_path, capsys):
    from implicit_prm.eval.metrics import bootstrap_counts, percentile_interval

    path = write(tmp_path / "s.jsonl", steps_records())
    res = run_steps(StepsConfig(input=path, threshold=0.5, seed=4))
    ev = res["evaluated"]
    assert (res["n_bootstrap"], res["ci_level"]) == (1000, 0.95) and set(ev["ci"]) == {"acc_err", "acc_ok", "f1"}
    for k in ("acc_err", "acc_ok", "f1"):
        lo, hi = ev["ci"][k]
        assert lo <= ev[k] <= hi and hi - lo > 0.05, k
    assert ev["ci_dropped"] == {"acc_err": 0, "acc_ok": 0, "f1": 0}  # 40 samples: both classes in every resample
    # the same interval from explicitly resampled samples through processbench_metrics
    recs = steps_records()
    preds = np.array([first_error_prediction(1 / (1 + np.exp(-np.array(r["q_values"]))), 0.5) for r in recs])
    labels = np.array([r["label"] for r in recs])
    stats = []
    for c in bootstrap_counts(40, 1000, seed=4):
        idx = np.repeat(np.arange(40), c)
        m = processbench_metrics(preds[idx], labels[idx])
        stats.append([m["acc_err"], m["acc_ok"], m["f1"]])
    want = percentile_interval(np.array(stats), 0.95)[0]
    assert np.array([ev["ci"][k] for k in ("acc_err", "acc_ok", "f1")]) == pytest.approx(want)
    assert "ci" not in res["optimistic"]  # tuned on the data it scores: no interval
    out = capsys.readouterr().out
    assert "95% percentile bootstrap interval over the 40 samples (1000 resamples, threshold fixed)" in out
    on_disk = json.loads((tmp_path / "s.steps.json").read_text())
    assert on_disk["evaluated"]["ci"] == ev["ci"]

    half = run_steps(StepsConfig(input=path, split_half=True, output=str(tmp_path / "h.json")))
    assert half["evaluated"]["ci"] is not None and "ci" not in half["tuned"]
    off = run_steps(StepsConfig(input=path, threshold=0.5, n_bootstrap=0, output=str(tmp_path / "o.json")))
    assert off["evaluated"]["ci"] is None and off["evaluated"]["f1"] == ev["f1"]
