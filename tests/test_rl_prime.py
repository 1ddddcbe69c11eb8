"""PrimeTrainer on TRL's GRPOTrainer with tiny random models on the CPU: the first step's advantages by hand, the
PRM's "after" and "before" orders on a hand-made batch, and resuming from TRL's checkpoints."""
from __future__ import annotations

import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

from implicit_prm.rl.prime import PrimeSettings, PrimeTrainer  # noqa: E402

PROMPTS = [(1, 2), (3, 4), (2, 2), (5, 1)]


def parity(completions, completion_ids, **kwargs):
    """A synthetic outcome: the first completion token's parity (random tokens give mixed groups)."""
    return [float(ids[0] % 2) for ids in completion_ids]


def make_trainer(out, model_dir, prime: PrimeSettings, max_steps=1, prm_init=True, batch=16, **args):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    torch.manual_seed(0)
    prm = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                         LoraConfig(r=4, target_modules="all-linear", init_lora_weights=prm_init))
    ds = Dataset.from_list([{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in PROMPTS * 4])
    cfg = GRPOConfig(output_dir=str(out), per_device_train_batch_size=batch, num_generations=4, max_completion_length=6,
                     max_steps=max_steps, learning_rate=1e-2, report_to="none", use_cpu=True, beta=0.0,
                     loss_type="bnpo", logging_steps=1, steps_per_generation=1, temperature=1.0, seed=0,
                     lr_scheduler_type="constant", bf16=False,
                     **{"save_strategy": "no", **args})
    return PrimeTrainer(model=model_dir, reward_funcs=[parity], args=cfg, train_dataset=ds,
                        processing_class=AutoTokenizer.from_pretrained(model_dir), prm=prm, prime=prime,
                        peft_config=LoraConfig(r=4, target_modules="all-linear")), prm


def trainable(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_first_step_after_has_zero_process_rewards_and_the_outcome_rloo_advantages(tmp_path, tiny_model):
    """A LoRA PRM with B = 0 on the reference's base: at step 1 ("after") every token reward is exactly 0, so the
    advantages are the whitened (unbiased, over the kept groups' response tokens) outcome RLOO returns. (One PRM
    mini-batch: with more, a later mini-batch is scored after the earlier ones' steps.)"""
    trainer, prm = make_trainer(tmp_path, tiny_model, PrimeSettings(prm_lr=1e-2, prm_mini_batches=1))
    policy0, prm0 = trainable(trainer.model), trainable(prm)
    trainer.train()
    b = trainer.last_batch
    assert (b["process"] == 0).all()
    kept, mask, o = b["kept"], b["mask"], b["outcome"].tolist()
    assert kept.any() and not kept.all()  # mixed and filtered groups both present
    loo = [o[i] - (sum(o[4 * (i // 4):4 * (i // 4) + 4]) - o[i]) / 3 for i in range(len(o))]  # K = 4
    lengths = [int(n) for n in mask.sum(1)]
    values = [loo[i] for i in range(len(o)) if kept[i] for _ in range(lengths[i])]  # its return at every token
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    want = torch.zeros_like(mask)
    for i in range(len(o)):
        if kept[i]:
            want[i, :lengths[i]] = (loo[i] - mean) / (sd ** 2 + 1e-8) ** 0.5
    assert torch.allclose(b["advantages"], want, atol=1e-5)
    assert (b["advantages"][~kept] == 0).all()
    policy1, prm1 = trainable(trainer.model), trainable(prm)
    assert all(torch.isfinite(p).all() for p in [*policy1.values(), *prm1.values()])
    assert any(not torch.equal(policy0[n], policy1[n]) for n in policy0)  # the policy's LoRA moved
    assert any(not torch.equal(prm0[n], prm1[n]) for n in prm0)  # and the PRM's


def _hand_batch(tok):
    """Two left-padded prompts of different lengths, each with two right-padded completions."""
    p1, p2 = tok.encode("What is 1 + 2?"), tok.encode("Add 3 and 4, please.")
    width = max(len(p1), len(p2))
    prompts = [p1, p1, p2, p2]
    comps = [tok.encode(" 3. Done"), tok.encode(" 4"), tok.encode(" It is 7."), tok.encode(" 8, I think")]
    cw = max(map(len, comps))
    pad = tok.pad_token_id
    return {"prompt_ids": torch.tensor([[pad] * (width - len(p)) + p for p in prompts]),
            "prompt_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
            "completion_ids": torch.tensor([c + [pad] * (cw - len(c)) for c in comps]),
            "completion_mask": torch.tensor([[1] * len(c) + [0] * (cw - len(c)) for c in comps])}


def test_after_and_before_orders_on_a_hand_made_batch(tmp_path, tiny_model):
    trainer, prm = make_trainer(tmp_path, tiny_model, PrimeSettings(prm_lr=5e-2), prm_init=False)
    out = _hand_batch(trainer.processing_class)
    correct, kept, rows = torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.ones(4, dtype=torch.bool), slice(0, 4)
    weights, opt = copy.deepcopy(prm.state_dict()), copy.deepcopy(trainer.prm_optimizer.state_dict())

    def reset():
        prm.load_state_dict(weights)
        trainer.prm_optimizer.load_state_dict(copy.deepcopy(opt))

    def run(update, mini_batches):
        trainer.prime.update, trainer.prime.prm_mini_batches = update, mini_batches
        return trainer._prm_rewards(out, correct, kept, rows)

    def now():
        return trainer._prm_pass(out, [[0, 1, 2, 3]], correct, kept, rows, step=False)

    r0 = now()
    assert (r0 != 0).any() and (r0[out["completion_mask"] == 0] == 0).all()
    assert torch.allclose(run("none", 1), r0) and torch.allclose(now(), r0)  # a frozen PRM does not move
    after = run("after", 1)
    updated = now()
    assert torch.allclose(after, r0, atol=1e-6)  # the rewards of the pass before the step
    assert not torch.allclose(updated, r0, atol=1e-4)
    reset()
    assert torch.allclose(run("before", 1), updated, atol=1e-6)  # the same step first, then its rewards
    reset()
    two = run("after", 2)  # mini-batch 2 is scored after mini-batch 1's step
    assert torch.allclose(two[:2], r0[:2], atol=1e-6) and not torch.allclose(two[2:], r0[2:], atol=1e-4)


def test_outcome_only_rloo_runs_without_a_prm(tmp_path, tiny_model):
    trainer, _ = make_trainer(tmp_path, tiny_model, PrimeSettings(algorithm="rloo"))
    assert trainer.prm_module is None
    trainer.train()
    assert (trainer.last_batch["process"] == 0).all() and torch.isfinite(trainer.last_batch["advantages"]).all()


def test_resume_restores_the_prm_and_continues_as_uninterrupted(tmp_path, tiny_model):
    """Two steps straight against one step, a checkpoint, and a resumed second step: same PRM, same policy."""
    settings = dict(prm_lr=1e-2, prm_mini_batches=2)
    straight, prm_a = make_trainer(tmp_path / "a", tiny_model, PrimeSettings(**settings), max_steps=2)
    straight.train()
    first, _ = make_trainer(tmp_path / "b", tiny_model, PrimeSettings(**settings), max_steps=2, save_steps=1,
                            save_strategy="steps")
    first.args.max_steps = 1
    first.train()
    ckpt = tmp_path / "b" / "checkpoint-1"
    assert (ckpt / "prm" / "optimizer.pt").exists() and (ckpt / "prm" / "adapter_config.json").exists()
    resumed, prm_c = make_trainer(tmp_path / "b", tiny_model, PrimeSettings(**settings), max_steps=2)
    resumed.train(resume_from_checkpoint=str(ckpt))
    a, c = trainable(prm_a), trainable(prm_c)
    assert all(torch.allclose(a[n], c[n], atol=1e-6) for n in a)
    pa, pc = trainable(straight.model), trainable(resumed.model)
    assert all(torch.allclose(pa[n], pc[n], atol=1e-6) for n in pa)
    with pytest.raises(FileNotFoundError, match="no prm/"):
        shutil.rmtree(ckpt / "prm")
        make_trainer(tmp_path / "b", tiny_model, PrimeSettings(**settings), max_steps=2)[0].train(
            resume_from_checkpoint=str(ckpt))


FIXED_BATCH = """
import json, sys, torch
sys.path.insert(0, sys.argv[3])
from test_rl_prime import PrimeSettings, _hand_batch, make_trainer
world = int(__import__("os").environ.get("WORLD_SIZE", "1"))
trainer, prm = make_trainer(sys.argv[2], sys.argv[1], PrimeSettings(prm_lr=5e-2, prm_mini_batches=1), prm_init=False,
                            batch=8 // world)
one = _hand_batch(trainer.processing_class)  # 4 rows; the fixed batch is two groups of 4: it and a shifted copy
batch = {k: torch.cat([v, v.roll(1, 0)]) for k, v in one.items()}
rank = trainer.accelerator.process_index
local = {k: v[rank * 8 // world:(rank + 1) * 8 // world] for k, v in batch.items()}
rpf = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0], [1.0], [0.0], [1.0]])
out = trainer.prime_step(dict(local), rpf)
adv = trainer._gather_grid(out["advantages"])
prm_sum = sum(float(p.detach().abs().sum()) for p in prm.parameters() if p.requires_grad)
if rank == 0:
    json.dump({"advantages": adv.tolist(), "prm_abs_sum": prm_sum,
               "grad_norm": trainer._metrics["train"]["prime/prm_grad_norm"],
               "process": trainer.last_batch["process"].tolist()}, open(sys.argv[4], "w"))
trainer.accelerator.wait_for_everyone()
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun not installed")
def test_one_and_two_processes_give_the_same_advantages_and_prm_step(tmp_path, tiny_model):
    """A fixed batch of two groups, split over 2 CPU processes (gloo) or kept in one: the gathered token rewards,
    PRIME's advantages and the PRM after its DDP step agree."""
    script = tmp_path / "fixed.py"
    script.write_text(FIXED_BATCH)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_DISABLE_RICH": "1"}
    tests = str(Path(__file__).parent)
    res1 = subprocess.run([sys.executable, str(script), tiny_model, str(tmp_path / "o1"), tests,
                           str(tmp_path / "one.json")], env=env, capture_output=True, text=True, timeout=600)
    assert res1.returncode == 0, res1.stderr[-3000:]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    from test_distributed import _free_port

    res2 = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), str(script),
                           tiny_model, str(tmp_path / "o2"), tests, str(tmp_path / "two.json")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert res2.returncode == 0, res2.stderr[-3000:]
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert torch.tensor(one["process"]).abs().sum() > 0  # a PRM with random adapters: real process rewards
    assert torch.allclose(torch.tensor(one["process"]), torch.tensor(two["process"]), atol=1e-5)
    assert torch.allclose(torch.tensor(one["advantages"]), torch.tensor(two["advantages"]), atol=1e-5)
    # the PRM's gradient (before clipping) is the same mean over all kept rows: DDP's average of the scaled losses
    assert len(one["grad_norm"]) == len(two["grad_norm"]) == 1
    # (measured: 1.16526 against 1.16504, 2e-4 apart although the forward values agree exactly; a wrong loss
    # scaling across processes would be off by a factor, or by several percent for uneven kept rows)
    assert one["grad_norm"][0] == pytest.approx(two["grad_norm"][0], rel=1e-3)
    # Adam's first step is about lr x sign(g): a gradient entry near 0 may flip with the order of summation
    assert one["prm_abs_sum"] == pytest.approx(two["prm_abs_sum"], rel=1e-3)
