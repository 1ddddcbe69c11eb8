"""Bootstrap confidence intervals (eval.metrics): worked distributions, reproducibility, speed, and best-of-N's CI."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from implicit_prm.core.errors import ConfigError
from implicit_prm.eval.bon import BonConfig, run_bon
from implicit_prm.eval.metrics import (
    bootstrap_ci,
    bootstrap_counts,
    bootstrap_mean_ci,
    check_bootstrap,
    ci_list,
    fmt_ci,
    percentile_interval,
    weighted_auroc,
    weighted_mean,
)
from implicit_prm.eval.outcome import OutcomeConfig
from implicit_prm.eval.steps import StepsConfig
from implicit_prm.rewards import auroc


def test_two_values_known_distribution():
    # per-problem values [0, 1]: a resample draws 2 of them with replacement, so its mean is 0 (both 0), 0.5 or 1
    # with probabilities 1/4, 1/2, 1/4. The 2.5th / 97.5th percentiles are 0 and 1; the 30th / 70th (a 40% interval)
    # fall inside the middle half: 0.5 and 0.5.
    counts = bootstrap_counts(2, 4000, seed=0)
    assert counts.shape == (4000, 2) and (counts.sum(axis=1) == 2).all()
    means = weighted_mean(counts, np.array([0.0, 1.0]))
    freq = [np.mean(means == v) for v in (0.0, 0.5, 1.0)]
    assert freq == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    assert bootstrap_mean_ci([0.0, 1.0], 1000, seed=0).tolist() == [0.0, 1.0]
    assert bootstrap_mean_ci([0.0, 1.0], 1000, seed=0, level=0.4).tolist() == [0.5, 0.5]


def test_seeded_and_off():
    v = np.random.default_rng(3).random(50)
    a, b = bootstrap_mean_ci(v, 200, seed=7), bootstrap_mean_ci(v, 200, seed=7)
    assert a.tolist() == b.tolist()  # same seed, same interval
    assert bootstrap_mean_ci(v, 200, seed=8).tolist() != a.tolist()
    assert (bootstrap_counts(50, 10, 1) == bootstrap_counts(50, 10, 1)).all()
    assert bootstrap_mean_ci(v, 0) is None  # n_bootstrap = 0: no interval
    assert bootstrap_ci(lambda c: c.sum(axis=1), 50, 0) is None


def test_identical_values_zero_width():
    # every problem has the same value: every resample mean is that value, exactly
    ci = bootstrap_mean_ci(np.full((40, 3), 0.3), 500, seed=1)  # three columns, resampled together
    assert ci.shape == (3, 2) and (ci == 0.3).all()
    assert bootstrap_mean_ci([0.7], 100).tolist() == [0.7, 0.7]


def test_mean_ci_brackets_mean_and_matches_explicit_resampling():
    v = np.random.default_rng(0).random((60, 2))
    counts = bootstrap_counts(60, 300, seed=5)
    explicit = np.array([v[np.repeat(np.arange(60), c)].mean(axis=0) for c in counts])  # (B, 2)
    assert weighted_mean(counts, v) == pytest.approx(explicit)
    lo, hi = bootstrap_mean_ci(v, 300, seed=5).T
    assert (lo <= v.mean(axis=0)).all() and (v.mean(axis=0) <= hi).all()


def test_percentile_interval_and_dropped():
    stats = np.arange(101, dtype=float)  # 0..100: the p-th percentile is p
    ci, dropped = percentile_interval(stats, 0.9)
    assert ci.tolist() == pytest.approx([5.0, 95.0]) and dropped == 0
    with_nan = np.concatenate([stats, [np.nan] * 7])[:, None].repeat(2, axis=1)
    with_nan[:, 1] = np.nan  # a column with no defined resample
    ci, dropped = percentile_interval(with_nan, 0.9)
    assert ci[0].tolist() == pytest.approx([5.0, 95.0]) and np.isnan(ci[1]).all() and dropped.tolist() == [7, 108]
    assert ci_list(ci)[1] is None and ci_list(ci)[0] == pytest.approx([5.0, 95.0]) and ci_list(None) is None
    assert fmt_ci([0.521, 0.703]) == "[52.1, 70.3]" and fmt_ci([0.5, 1.0], 1.0, 3) == "[0.500, 1.000]"
    assert fmt_ci(None) == "n/a"


def test_weighted_auroc_matches_auroc_of_the_resample():
    rng = np.random.default_rng(2)
    unit = np.repeat(np.arange(12), 3)
    scores = np.round(rng.normal(size=36), 1)  # rounded: ties
    labels = (rng.random(36) < 0.5).astype(int)
    counts = bootstrap_counts(12, 50, seed=0)
    got = weighted_auroc(counts, scores, labels, unit, chunk=100)  # the pair matrix, in column blocks
    chunked = weighted_auroc(counts, scores, labels, unit, chunk=100, max_pair_units=0)  # the chunked resamples
    assert np.allclose(got, chunked, equal_nan=True)
    for c, a in zip(counts, got):
        sel = np.concatenate([np.flatnonzero(unit == u) for u in np.repeat(np.arange(12), c)])
        want = auroc(scores[sel].tolist(), labels[sel].tolist())
        assert (np.isnan(a) and want is None) or a == pytest.approx(want)
    one_class = weighted_auroc(np.array([[2, 0], [1, 1]]), np.array([0.2, 0.1]), np.array([1, 0]), np.array([0, 1]))
    assert np.isnan(one_class[0]) and one_class[1] == 1.0  # only unit 0 (all correct) drawn: undefined
    all_correct = weighted_auroc(np.array([[1, 1]]), np.array([0.2, 0.1]), np.array([1, 1]), np.array([0, 1]))
    assert np.isnan(all_correct).all()


def test_speed_1000_resamples_of_500_problems():
    rng = np.random.default_rng(0)
    v = rng.random((500, 8))  # e.g. 500 problems x 8 (method, N) cells
    start = time.perf_counter()
    ci = bootstrap_mean_ci(v, 1000, seed=0)
    assert time.perf_counter() - start < 1.0 and ci.shape == (8, 2)
    unit = np.repeat(np.arange(500), 16)  # AUROC over 500 problems x 16 responses (about 0.02 s unloaded)
    start = time.perf_counter()
    got = weighted_auroc(bootstrap_counts(500, 1000, 0), rng.normal(size=8000), rng.integers(0, 2, 8000), unit)
    assert time.perf_counter() - start < 1.0 and got.shape == (1000,)


@pytest.mark.parametrize("kw", [{"n_bootstrap": -1}, {"ci_level": 1.0}, {"ci_level": 0.0}, {"n_bootstrap": 1.5}])
def test_bad_bootstrap_config(kw):
    with pytest.raises(ConfigError):
        check_bootstrap(kw.get("n_bootstrap", 10), kw.get("ci_level", 0.95))
    for cls in (BonConfig, StepsConfig, OutcomeConfig):
        with pytest.raises(ConfigError):
            cls(input="x.jsonl", **kw)


def bon_records(n_problems=30, k=4, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for p in range(n_problems):
        for i in range(k):
            ok = bool(rng.random() < 0.5)
            recs.append({"problem_id": p, "response": f"r{i}", "extracted_answer": "1" if ok else str(rng.integers(2, 4)),
                         "correct": ok, "scores": {"min": float(rng.normal() + ok)}})
    return recs


def test_bon_ci_end_to_end(tmp_path, capsys):
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bon_records()))
    res = run_bon(BonConfig(input=str(path), n_subsets=20, seed=3))
    assert (res["n_bootstrap"], res["ci_level"]) == (1000, 0.95)
    for m, r in res["methods"].items():
        assert len(r["ci"]) == len(res["ns"]) == 3
        for acc, (lo, hi) in zip(r["acc"], r["ci"]):
            assert lo <= acc <= hi, m
    # pass@4 of a problem is "any of its 4 responses correct": its interval is the bootstrap of those 0/1 values
    recs = bon_records()
    any_ok = [float(any(r["correct"] for r in recs[4 * p:4 * p + 4])) for p in range(30)]
    assert res["methods"]["pass@N"]["ci"][-1] == pytest.approx(bootstrap_mean_ci(any_ok, 1000, seed=3).tolist())
    on_disk = json.loads((tmp_path / "b.bon.json").read_text())
    assert on_disk["methods"]["majority"]["ci"] == res["methods"]["majority"]["ci"]
    table = capsys.readouterr().out
    assert "95% percentile bootstrap interval over the 30 problems (1000 resamples)" in table
    assert fmt_ci(res["methods"]["prm.min"]["ci"][0]) in table
    again = run_bon(BonConfig(input=str(path), n_subsets=20, seed=3, output=str(tmp_path / "again.json")))
    assert again["methods"] == res["methods"]  # seeded
    capsys.readouterr()
    off = run_bon(BonConfig(input=str(path), n_subsets=20, seed=3, n_bootstrap=0, output=str(tmp_path / "off.json")))
    assert all(r["ci"] is None for r in off["methods"].values()) and off["n_bootstrap"] == 0
    assert all(off["methods"][m]["acc"] == res["methods"][m]["acc"] for m in res["methods"])
    assert "bootstrap" not in capsys.readouterr().out
