"""`implicit-prm rollout` on the real embedded model with a handful of problems: format, grading, resume."""
from __future__ import annotations

import json
import os

import pytest

from implicit_prm.collect.rollout import FREE_ON_RESUME, RolloutConfig, finished_output, rollout
from implicit_prm.core.config import save_config
from implicit_prm.core.io import write_jsonl
from implicit_prm.core.results import config_path
from implicit_prm.core.resume import PartialFile, run_signature
from implicit_prm.data.benchmarks import load_problems


def _problems(tmp_path):
    path = tmp_path / "problems.jsonl"
    rows = [{"question": "What is 2 + 3?", "answer": "5"}, {"question": "What is 10 - 4?", "answer": "6"},
            {"question": "What is 3 * 3?", "answer": "9"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_rollout_writes_graded_rollouts_and_resumes(tmp_path):
    out = tmp_path / "rollouts.jsonl"
    cfg = RolloutConfig(problems=str(_problems(tmp_path)), output=str(out), n_samples=2, max_new_tokens=24,
                        batch_size=2, progress=False, seed=1)
    summary = rollout(cfg)
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["problem"] for r in recs] == ["What is 2 + 3?", "What is 10 - 4?", "What is 3 * 3?"]
    for r in recs:
        assert len(r["completions"]) == len(r["correctness"]) == len(r["extracted_answers"]) == 2
        assert all(isinstance(c, str) and c for c in r["completions"])
        assert all(isinstance(c, bool) for c in r["correctness"])
        assert "{question}" not in r["prompt"] and r["problem"] in r["prompt"]
    assert summary["n"] == 6 and summary["n_correct"] == sum(sum(r["correctness"]) for r in recs)
    assert (tmp_path / "rollouts.jsonl.config.json").exists() and not (tmp_path / "rollouts.jsonl.partial").exists()
    stats = json.loads((tmp_path / "rollouts.jsonl.stats.json").read_text())  # data.stats of the same records
    assert stats["n_problems"] == 3 and stats["samples_per_problem"] == 2
    assert stats["pass@1"] == pytest.approx(summary["n_correct"] / 6)  # 2 samples each: the mean of the fractions

    # Resume: a killed run left the first problem finished (and a torn line); only the rest is generated again.
    out2 = tmp_path / "again.jsonl"
    partial = tmp_path / "again.jsonl.partial"
    cfg2 = RolloutConfig(problems=cfg.problems, output=str(out2), n_samples=2, max_new_tokens=24, batch_size=2,
                         progress=False, seed=1)
    PartialFile(partial, run_signature(cfg2, FREE_ON_RESUME)).restart([recs[0]])
    with open(partial, "a") as f:
        f.write('{"id": "torn')
    rollout(cfg2)
    again = [json.loads(l) for l in out2.read_text().splitlines()]
    assert again[0] == recs[0] and [r["id"] for r in again] == [r["id"] for r in recs]


@pytest.mark.slow
def test_greedy_rollout_is_deterministic(tmp_path):
    kw = dict(problems=str(_problems(tmp_path)), n_samples=1, max_new_tokens=16, temperature=0.0, limit=1,
              progress=False)
    rollout(RolloutConfig(output=str(tmp_path / "a.jsonl"), **kw))
    rollout(RolloutConfig(output=str(tmp_path / "b.jsonl"), **kw))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def _finished(tmp_path, **kw):
    """A finished output of 3 problems (records and their config beside them), as `rollout` leaves it."""
    cfg = RolloutConfig(problems=str(_problems(tmp_path)), output=str(tmp_path / "out.jsonl"), n_samples=1,
                        model="no-such-model", **kw)
    recs = [{"id": p.id, "prompt": p.question, "completions": [f"\\boxed{{{p.answer}}}"], "correctness": [i != 1],
             "extracted_answers": [p.answer], "grade_status": ["ok"]}
            for i, p in enumerate(load_problems(cfg.problems))]
    write_jsonl(cfg.output, recs)
    save_config(cfg, config_path(cfg.output))
    return cfg, recs


def test_a_finished_output_of_the_same_run_is_kept(tmp_path, capsys):
    cfg, recs = _finished(tmp_path)
    before = (tmp_path / "out.jsonl").read_text()
    again = RolloutConfig(**{**vars(cfg), "progress": False, "log_every": 5})  # fields free on resume may change
    summary = rollout(again)  # the model does not exist: loading it would fail, so nothing is sampled
    assert "already holds these rollouts; nothing to do" in capsys.readouterr().out
    assert (tmp_path / "out.jsonl").read_text() == before
    assert (summary["n"], summary["n_correct"], summary["tokens_per_s"]) == (3, 2, None)


def test_a_finished_output_of_other_settings_or_problems_is_sampled_again(tmp_path, capsys):
    cfg, recs = _finished(tmp_path)
    problems = load_problems(cfg.problems)
    assert finished_output(cfg, tmp_path / "out.jsonl", problems) == recs
    hotter = RolloutConfig(**{**vars(cfg), "temperature": 1.0})
    assert finished_output(hotter, tmp_path / "out.jsonl", problems) is None
    assert "other settings (temperature)" in capsys.readouterr().out
    fewer = RolloutConfig(**{**vars(cfg), "limit": 2})  # limit is free on resume, but the records must match
    assert finished_output(fewer, tmp_path / "out.jsonl", problems[:2]) is None
    assert "other problems" in capsys.readouterr().out
    later = config_path(cfg.output).stat().st_mtime_ns + 10**9
    os.utime(cfg.problems, ns=(later, later))  # the problems were edited after the output was written
    assert finished_output(cfg, tmp_path / "out.jsonl", problems) is None
    assert "problems.jsonl modified since" in capsys.readouterr().out
    config_path(cfg.output).unlink()  # no config beside it: cut off before it finished
    assert finished_output(cfg, tmp_path / "out.jsonl", problems) is None
