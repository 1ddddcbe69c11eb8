"""Resuming: a SIGKILLed training run restarts from its last checkpoint and ends where an uninterrupted run ends;
an interrupted scoring run scores only what is left; a finished run has nothing to do."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import implicit_prm.scoring.implicit as prm_mod
from implicit_prm.cli import main
from implicit_prm.collect.builtin import write_builtin
from implicit_prm.data.builtin import BuiltinDataConfig

REWARD_FIELDS = ("step_rewards", "q_values", "scores", "reward_schema")


def train_argv(data: Path, out: Path, model: str, cache: Path) -> list[str]:
    # 12 problems x 2 responses, 2 per step -> 12 steps; lr 1e-3 so the loss moves; a checkpoint every 2 steps.
    return ["train", "--data", str(data), "--output", str(out), "--model", model, "--dtype", "fp32", "--no-progress",
            "--ref-cache", str(cache), "--checkpoint-every", "2", "--batch-size", "2", "--lr", "1e-3"]


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def finished_checkpoints(out: Path) -> list[Path]:
    d = out / "checkpoints"
    return [p for p in d.glob("step_*") if not p.name.endswith(".tmp")] if d.exists() else []


def start_and_kill(argv: list[str], out: Path, logs: Path) -> bool:
    """Start the run in its own process, SIGKILL it once a finished checkpoint exists; False if it ended first."""
    with open(logs / "killed.out", "w") as so, open(logs / "killed.err", "w") as se:
        proc = subprocess.Popen([sys.executable, "-m", "implicit_prm", *argv], stdout=so, stderr=se)
        deadline = time.time() + 240
        try:
            while time.time() < deadline:
                if finished_checkpoints(out):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=60)
                    return proc.returncode == -signal.SIGKILL
                if proc.poll() is not None:
                    return False
                time.sleep(0.02)
            pytest.fail("no checkpoint appeared within 240 s: " + (logs / "killed.err").read_text()[-2000:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.subprocess
def test_sigkilled_training_resumes_to_the_same_final_loss(tmp_path, capsys, tiny_model):
    cache = tmp_path / "rc.sqlite"
    for attempt, n_problems in enumerate((12, 48)):  # more data if the kill came too late (never seen so far)
        data = tmp_path / f"train{attempt}.jsonl"
        write_builtin(BuiltinDataConfig(output=str(data), n_problems=n_problems, samples_per_problem=2, seed=3))
        whole, broken = tmp_path / f"whole{attempt}", tmp_path / f"broken{attempt}"
        assert main(train_argv(data, whole, tiny_model, cache)) == 0  # the uninterrupted run, in this process
        capsys.readouterr()
        argv = train_argv(data, broken, tiny_model, cache)
        if start_and_kill(argv, broken, tmp_path):
            break
    else:
        pytest.fail("both runs finished before a checkpoint could be killed")

    assert not (broken / "implicit_prm.json").exists()  # killed mid-run: no final model
    changed = [a if a != "1e-3" else "2e-3" for a in argv]  # another lr cannot continue this run
    assert main(changed) == 2
    assert "different config (fields ['lr'])" in capsys.readouterr().err
    expected = read_log(whole)
    n_steps = len(expected)
    assert n_steps == n_problems * 2 // 2
    assert expected[-1]["loss"] != pytest.approx(expected[0]["loss"], abs=1e-3)  # the loss moved

    proc = subprocess.run([sys.executable, "-m", "implicit_prm", *argv], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    resumed_at = int(proc.stdout.split("resumed from")[1].split("(step ")[1].split(")")[0])
    assert 2 <= resumed_at < n_steps and resumed_at % 2 == 0

    log = read_log(broken)
    assert [r["step"] for r in log] == list(range(1, n_steps + 1))  # one record per step, none repeated
    assert log[-1]["loss"] == pytest.approx(expected[-1]["loss"], abs=1e-5)
    for got, want in zip(log, expected):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-5), got["step"]
    # the token count and the clock go on across the resume: they count the whole training, not its last part
    assert [r["tokens"] for r in log] == [r["tokens"] for r in expected]
    assert all(b["elapsed_s"] > a["elapsed_s"] for a, b in zip(log, log[1:]))
    assert (broken / "implicit_prm.json").exists() and not (broken / "checkpoints").exists()


def test_finished_training_has_nothing_to_do(tmp_path, capsys, tiny_model):
    data = tmp_path / "train.jsonl"
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=2, samples_per_problem=2, seed=1))
    out = tmp_path / "run"
    argv = train_argv(data, out, tiny_model, tmp_path / "rc.sqlite") + ["--max-steps", "1"]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(argv) == 0
    stdout, _ = capsys.readouterr()
    assert "nothing to do" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # Other settings, or other data, into the finished run's folder are refused, not answered with the old model.
    assert main([a if a != "1e-3" else "2e-3" for a in argv]) == 2
    assert "different config (fields ['lr'])" in capsys.readouterr().err
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=3, samples_per_problem=2, seed=1))
    assert main(argv) == 2
    assert "data_size" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


# ----------------------------------------------------------------------------- scoring

def score_argv(data: Path, out: Path, prm: str, ref: str, cache: Path) -> list[str]:
    return ["score", "--input", str(data), "--output", str(out), "--prm", prm, "--ref", ref, "--dtype", "fp32",
            "--no-progress", "--ref-cache", str(cache), "--batch-tokens", "512"]


def partial_line(i: int, rec: dict) -> str:
    """One line of `<output>.partial` as score.py writes it: the sample index and its reward fields."""
    return json.dumps({"i": i, "r": {k: rec[k] for k in REWARD_FIELDS}}) + "\n"


def interrupted(out: Path, records: list[dict], done: list[int], argv: list[str], tail: str = "") -> Path:
    """Leave `<out>.partial` as a killed run of `argv` leaves it, with `done` finished (and `tail` half-written).

    The run is started for real and stopped before its PRM pass, so the partial file carries that run's own
    header (which ties it to its input, PRM and settings); the finished records are then appended to it.
    """
    def killed(*a, **kw):
        raise KeyboardInterrupt

    real = prm_mod.response_logprobs
    prm_mod.response_logprobs = killed
    try:
        assert main(argv) == 130
    finally:
        prm_mod.response_logprobs = real
    partial = out.with_name(out.name + ".partial")
    header = partial.read_text().splitlines()[0]
    partial.write_text(header + "\n" + "".join(partial_line(i, records[i]) for i in done) + tail)
    return partial


@pytest.fixture
def count_prm_pass(monkeypatch):
    """Count the responses that go through the PRM pass (the reference pass is cached and not counted)."""
    seen: list[int] = []
    real = prm_mod.response_logprobs

    def counting(model, encs, *args, **kw):
        seen.append(len(encs))
        return real(model, encs, *args, **kw)

    monkeypatch.setattr(prm_mod, "response_logprobs", counting)
    return seen


def assert_same_records(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in REWARD_FIELDS} == \
            {k: v for k, v in w.items() if k not in REWARD_FIELDS}
        assert g["step_rewards"] == pytest.approx(w["step_rewards"], abs=1e-5)
        assert g["q_values"] == pytest.approx(w["q_values"], abs=1e-5)
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def scored_reference(tmp_path, capsys, builtin_data, tiny_model, tiny_model_b):
    """An uninterrupted scoring run of builtin_data: (records, a cache holding the reference's log-probs only).

    The run's own cache also holds the PRM's log-probs (kept for re-scoring), which would let a resumed run skip
    the PRM pass altogether; the returned cache is filled by scoring the reference against itself instead."""
    out = tmp_path / "whole" / "scored.jsonl"
    assert main(score_argv(builtin_data, out, tiny_model_b, tiny_model, tmp_path / "whole.sqlite")) == 0
    cache = tmp_path / "rc.sqlite"
    assert main(score_argv(builtin_data, tmp_path / "ref_only.jsonl", tiny_model, tiny_model, cache)) == 0
    capsys.readouterr()
    return read_jsonl(out), cache


DONE = [3, 0, 17, 11, 5]  # an interrupted run finishes records in length-bucket order, not file order


def test_interrupted_scoring_resumes_without_rescoring(tmp_path, capsys, builtin_data, tiny_model, tiny_model_b,
                                                       scored_reference, count_prm_pass):
    want, cache = scored_reference
    out = tmp_path / "resumed" / "scored.jsonl"
    interrupted(out, want, DONE, score_argv(builtin_data, out, tiny_model_b, tiny_model, cache))

    assert main(score_argv(builtin_data, out, tiny_model_b, tiny_model, cache)) == 0
    stdout, _ = capsys.readouterr()
    assert f"resuming: {len(DONE)} of {len(want)} responses already scored" in stdout
    assert sum(count_prm_pass) == len(want) - len(DONE)
    assert_same_records(read_jsonl(out), want)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scored.jsonl", "scored.jsonl.config.json",
                                                          "scored.jsonl.flops.json"]


def test_scoring_resumes_after_a_torn_last_line(tmp_path, capsys, builtin_data, tiny_model, tiny_model_b,
                                                scored_reference, count_prm_pass):
    want, cache = scored_reference
    out = tmp_path / "resumed" / "scored.jsonl"
    partial = interrupted(out, want, DONE, score_argv(builtin_data, out, tiny_model_b, tiny_model, cache),
                          tail=partial_line(9, want[9])[:25])  # killed while writing record 9

    assert main(score_argv(builtin_data, out, tiny_model_b, tiny_model, cache)) == 0
    assert sum(count_prm_pass) == len(want) - len(DONE)
    assert_same_records(read_jsonl(out), want)
    assert not partial.exists()


def test_stale_partial_from_another_prm_is_not_reused(tmp_path, capsys, builtin_data, tiny_model, tiny_model_b,
                                                      scored_reference):
    want, cache = scored_reference  # scored with PRM tiny_model_b
    out = tmp_path / "other" / "scored.jsonl"
    other = tmp_path / "other_fresh.jsonl"  # a fresh run with the reference model as its own PRM: all rewards 0
    assert main(score_argv(builtin_data, other, tiny_model, tiny_model, cache)) == 0
    interrupted(out, want, DONE, score_argv(builtin_data, out, tiny_model_b, tiny_model, cache))

    code = main(score_argv(builtin_data, out, tiny_model, tiny_model, cache))
    _, err = capsys.readouterr()
    if code == 2:  # refusing, and saying why, is as good as starting over
        assert ".partial" in err
    else:
        assert code == 0
        assert_same_records(read_jsonl(out), read_jsonl(other))
