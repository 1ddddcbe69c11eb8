"""Progress without a terminal: plain lines every N units (or every 10%), with the bar's values and an ETA."""
from __future__ import annotations

import io

from tqdm.auto import tqdm

from implicit_prm.core.progress import PlainProgress, progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_lines_every_tenth_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(20, desc="score", unit="tok", stream=out, clock=clock)
    for i in range(20):
        clock.t += 0.5  # 2 tok/s
        bar.set_postfix(loss="0.69")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # every 2 of 20 (10%), the last at 20/20; close adds nothing more
    assert lines[0] == "[implicit-prm] score: 2/20 tok (10%), 2 tok/s, ETA 9s, loss=0.69"
    assert lines[-1] == "[implicit-prm] score: 20/20 tok (100%), 2 tok/s, ETA 0s, loss=0.69"


def test_every_n_and_a_resumed_start():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(1000, initial=400, desc="train ce", unit="step", every=250, stream=out, clock=clock)
    clock.t += 100.0
    bar.update(200)  # 400 -> 600 passes 500: one line; rate counts this run's steps only
    clock.t += 100.0
    bar.update(50)  # 650: no multiple of 250 passed
    bar.close()  # the end of the run prints where it stopped
    assert out.getvalue().splitlines() == [
        "[implicit-prm] train ce: 600/1000 step (60%), 2 step/s, ETA 3m20s",
        "[implicit-prm] train ce: 650/1000 step (65%), 1.25 step/s, ETA 4m40s"]


def test_terminal_gets_tqdm_and_no_show_gets_nothing():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress(10, "x", stream=Tty()), tqdm)
    assert isinstance(progress(10, "x", stream=io.StringIO()), PlainProgress)
    quiet = io.StringIO()
    bar = progress(10, "x", show=False, stream=quiet)
    bar.update(10)
    bar.close()
    assert quiet.getvalue() == ""


def test_train_prints_plain_lines_in_a_log(tmp_path, builtin_data, tiny_model, capsys):
    from implicit_prm.training.config import TrainConfig
    from implicit_prm.training.loop import train

    train(TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), model=tiny_model, batch_size=4,
                      max_steps=2, precision="fp32", logprob_cache=str(tmp_path / "c.sqlite"), checkpoint_every=0,
                      progress=True, log_every=1))
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[implicit-prm] train ce:")]
    assert [x.split(",")[0] for x in lines] == ["[implicit-prm] train ce: 1/2 step (50%)",
                                                "[implicit-prm] train ce: 2/2 step (100%)"]
    assert all("loss=" in x and "acc=" in x for x in lines)


def test_report_to_tensorboard_writes_the_config_and_every_step(tmp_path, builtin_data, tiny_model):
    import json

    import pytest

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from implicit_prm.training.config import TrainConfig
    from implicit_prm.training.loop import train

    out = train(TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), model=tiny_model, batch_size=4,
                            max_steps=3, precision="fp32", logprob_cache=str(tmp_path / "c.sqlite"),
                            checkpoint_every=0, progress=False, report_to="tensorboard"))
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events, "no event file under <output>/runs"
    ea = EventAccumulator(str(events[0].parent))
    ea.Reload()
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    loss = ea.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in log], rel=1e-6)
    assert [e.value for e in ea.Scalars("train/acc")] == pytest.approx([r["acc"] for r in log])
    # the config, once: accelerate's tensorboard tracker writes it as hparams beside the scalars
    import yaml

    (hp,) = list((out / "runs").rglob("hparams.yml"))
    config = yaml.safe_load(hp.read_text())
    assert (config["objective"], config["batch_size"], config["max_steps"], config["report_to"]) == (
        "ce", 4, 3, "tensorboard")


def test_report_to_all_says_what_is_not_installed(capsys):
    from implicit_prm.training.tracking import TRACKERS, resolve_trackers

    got = resolve_trackers("all", say=print)
    said = capsys.readouterr().out
    for t in TRACKERS:
        assert (t in got) != (t in said)  # each tracker is either used or named as not installed
    assert resolve_trackers("none") == []
