"""`implicit-prm rl` on a tiny random model: a PRIME run writes its checkpoints, policy and PRM, resumes when
restarted with more steps, and refuses another config in the same folder."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from implicit_prm.cli import main  # noqa: E402
from implicit_prm.core.errors import ConfigError  # noqa: E402
from implicit_prm.rl.run import RLConfig, last_checkpoint, rl  # noqa: E402


def _cfg(tmp_path, tiny_model, **kw):
    return RLConfig(output=str(tmp_path / "run"), model=tiny_model, problems="arith:add1", prompts_per_step=2,
                    n_samples=2, steps_per_generation=1, max_new_tokens=6, lr=1e-3, prm_lr=1e-3,
                    **{"max_steps": 1, **kw})


def test_rl_runs_saves_and_resumes(tmp_path, tiny_model):
    rl(_cfg(tmp_path, tiny_model))
    run = tmp_path / "run"
    assert last_checkpoint(run) == str(run / "checkpoint-1")
    assert (run / "checkpoint-1" / "prm" / "optimizer.pt").exists()
    assert (run / "policy" / "adapter_config.json").exists() and (run / "prm" / "adapter_config.json").exists()
    with pytest.raises(ConfigError, match="another config"):
        rl(_cfg(tmp_path, tiny_model, max_steps=2))
    cfg = json.loads((run / "rl_config.json").read_text())
    (run / "rl_config.json").write_text(json.dumps({**cfg, "max_steps": 2}))  # the same run, asked to go on
    rl(_cfg(tmp_path, tiny_model, max_steps=2))
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "prime/kept_groups" in e]
    assert steps == [1, 2]  # step 1 from before the restart, step 2 after it


def test_rl_command_line_and_bad_settings(tmp_path, tiny_model, capsys):
    assert main(["rl", "--output", str(tmp_path / "x"), "--model", tiny_model, "--n-samples", "1"]) == 2
    assert "at least 2 samples" in capsys.readouterr().err
    assert main(["rl", "--output", str(tmp_path / "x"), "--model", tiny_model, "--prompts-per-step", "3",
                 "--n-samples", "2", "--steps-per-generation", "4"]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert main(["rl", "--output", str(tmp_path / "x"), "--model", tiny_model, "--problems", "arith:add7"]) == 2
    assert "unknown tier 'add7'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything is written
