"""Training: first logged loss at init equals each objective's closed form; weights move; LoRA holds one copy."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from implicit_prm.core.precision import resolve_compile
from implicit_prm.losses import closed_form_init_loss
from implicit_prm.models import loading as models
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train
from implicit_prm.training.plan import Example, batch_rows, make_plan, micro_batches


def _log(out):
    return [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]


def _cfg(tmp_path, data, model, **kw):
    base = dict(data=str(data), output=str(tmp_path / kw.pop("name", "run")), model=model, batch_size=4,
                lr=1e-3, precision="fp32", logprob_cache=str(tmp_path / "ref.sqlite"), progress=False, checkpoint_every=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("objective,expected", [("ce", math.log(2)), ("dpo", math.log(2)),
                                                ("nca", 2 * math.log(2)), ("kto", 0.5)])
def test_first_logged_loss_is_closed_form_at_init(tmp_path, builtin_data, tiny_model, objective, expected):
    out = train(_cfg(tmp_path, builtin_data, tiny_model, objective=objective, max_steps=2))
    log = _log(out)
    assert abs(log[0]["loss"] - expected) < 1e-4
    assert abs(expected - closed_form_init_loss(objective)) < 1e-12
    assert log[0]["reward_correct"] == pytest.approx(0, abs=1e-4)
    assert log[1]["loss"] != pytest.approx(log[0]["loss"], abs=1e-6)  # the update moved the model
    assert {"step", "loss", "lr", "reward_correct", "reward_incorrect", "acc"} <= set(log[0])


def test_full_finetune_changes_every_parameter_and_saves_loadable_model(tmp_path, builtin_data, tiny_model):
    out = train(_cfg(tmp_path, builtin_data, tiny_model, max_steps=3, warmup_ratio=0.0))
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    after = AutoModelForCausalLM.from_pretrained(out)
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"
    meta = json.loads((out / "implicit_prm.json").read_text())
    assert meta["beta"] == 0.05 and meta["objective"] == "ce" and meta["reference_model"] == tiny_model
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["lr"] == 1e-3 and saved["objective"] == "ce"
    assert not (out / "checkpoints").exists()


def test_lora_uses_base_as_reference_with_one_copy(tmp_path, builtin_data, tiny_model, monkeypatch):
    calls = []
    real = models.load_model

    def counting(spec, *a, **kw):
        calls.append(spec)
        return real(spec, *a, **kw)

    monkeypatch.setattr("implicit_prm.training.loop.load_model", counting)
    monkeypatch.setattr("implicit_prm.scoring.reference.load_model", counting)
    out = train(_cfg(tmp_path, builtin_data, tiny_model, lora=True, lora_r=4, max_steps=2, objective="dpo",
                     batch_size=2))
    assert calls == [tiny_model]  # the reference pass ran on the same weights with the adapter disabled
    assert abs(_log(out)[0]["loss"] - math.log(2)) < 1e-4
    assert (out / "adapter_config.json").exists()


def test_compile_auto_rule_and_flag():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile(cpu, "auto", 599) is False and resolve_compile(cpu, "auto", 600) is True
    assert resolve_compile(cuda, "auto", 199) is False and resolve_compile(cuda, "auto", 200) is True
    assert resolve_compile(torch.device("mps"), "auto", 10 ** 6) is False  # not measured there: never by default
    assert resolve_compile(cpu, "on", 1) is True and resolve_compile(cuda, "off", 10 ** 6) is False
    with pytest.raises(ValueError, match="compile must be"):
        resolve_compile(cpu, "yes", 1)


def test_compiled_decoder_trains_the_same_and_saves_the_same_keys(tmp_path, builtin_data, tiny_model, capsys):
    from safetensors.torch import load_file

    kw = dict(lora=True, lora_r=4, max_steps=3, warmup_ratio=0.0)
    eager = train(_cfg(tmp_path, builtin_data, tiny_model, name="eager", compile="off", **kw))
    assert "compiling the decoder" not in capsys.readouterr().out
    compiled = train(_cfg(tmp_path, builtin_data, tiny_model, name="compiled", compile="on", **kw))
    assert "compiling the decoder" in capsys.readouterr().out
    for a, b in zip(_log(eager), _log(compiled), strict=True):  # fp32: fused kernels reorder sums, nothing more
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    wa, wb = (load_file(str(out / "adapter_model.safetensors")) for out in (eager, compiled))
    assert sorted(wa) == sorted(wb)  # no torch.compile `_orig_mod.` prefix in what is saved
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-5), name


def test_plan_is_seeded_and_sharded_like_one_process():
    plan = make_plan(17, global_batch=4, epochs=1, seed=5, max_steps=None)
    assert len(plan) == 4 and all(len(s) == 4 for s in plan)  # 17 // 4, the last partial batch dropped
    assert plan == make_plan(17, 4, 1, 5, None)
    assert sorted(i for s in plan for i in s) == sorted(set(i for s in plan for i in s))  # no example twice
    assert make_plan(17, 4, 2, 5, 6)[4:] != plan[:2]  # the second epoch is shuffled anew
    # Two processes with grad_accum=1 see the same global batch, split in the same micro-batches.
    one = micro_batches(plan[0], batch_size=2, grad_accum=2, rank=0, n_proc=1)
    two = [micro_batches(plan[0], 2, 1, rank, 2)[0] for rank in range(2)]
    assert one == two == [plan[0][:2], plan[0][2:]]


def test_batch_rows_lay_pairs_out_as_chosen_then_rejected():
    pairs = [Example((0, 1), (1, 0)), Example((5, 2), (1, 0))]
    assert batch_rows(pairs) == ([0, 5, 1, 2], [1, 1, 0, 0])
    single = [Example((3,), (0,)), Example((4,), (1,))]
    assert batch_rows(single) == ([3, 4], [0, 1])


def test_resume_refuses_other_data_or_process_count(tmp_path, builtin_data):
    """The run signature holds the data file's size and mtime and the number of processes (it sets the global batch,
    so the step plan); the output path and progress settings may change."""
    from implicit_prm.core.errors import UserError
    from implicit_prm.core.io import write_json
    from implicit_prm.training.loop import SIGNATURE_FILE, check_resumable, signature

    cfg = TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), progress=False)
    write_json(tmp_path / "run" / SIGNATURE_FILE, signature(cfg, 1))
    check_resumable(cfg, tmp_path / "run", 1)  # the same run
    check_resumable(TrainConfig(data=str(builtin_data), output="./elsewhere", checkpoint_every=5), tmp_path / "run", 1)
    with pytest.raises(UserError, match=r"fields \['processes'\]"):
        check_resumable(cfg, tmp_path / "run", 2)
    os.utime(builtin_data, ns=(0, 0))
    with pytest.raises(UserError, match=r"fields \['data_mtime_ns'\]"):
        check_resumable(cfg, tmp_path / "run", 1)
