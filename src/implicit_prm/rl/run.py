"""`implicit-prm rl`: train a policy with PRIME (or outcome-only RLOO) on problems with answers, on TRL's
GRPOTrainer (`rl.prime.PrimeTrainer`). Runs unchanged under `accelerate launch`; a killed run restarted with the
same command resumes from its last checkpoint (saved at rollout-batch boundaries)."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from ..collect.rollout import DEFAULT_PROMPT
from ..core.config import field, field_defaults
from ..core.errors import ConfigError
from ..core.io import read_json_file, write_json
from ..core.resume import changed_fields
from ..data.benchmarks import load_problems
from ..models.loading import DEFAULT_MODEL, LoraSpec, load_model, load_tokenizer
from .advantages import BASELINES


@dataclass
class RLConfig:
    output: str = field(help="run folder: TRL's checkpoints, trainer_state.json (every logged metric), the final "
                             "policy (and PRM) and rl_config.json")
    problems: str = field("arith:add1+sub1+add3", help="training problems: a file, a benchmark name (gsm8k:train, "
                                                       "math:train) or built-in tasks arith:TIER[+TIER...]")
    eval_problems: Optional[str] = field(None, help="held-out problems, e.g. arith:add1+sub1+add3:test (pass@1 "
                                                    "and the answered rate every --eval-every steps)")
    n_eval: int = field(64, help="held-out problems evaluated (the first N)")
    eval_every: int = field(0, help="evaluate every N steps (0: at the end only, if --eval-problems)")
    model: str = field(DEFAULT_MODEL, help="the initial policy: hub id, local dir, .gguf, smollm2-135m")
    prm: Optional[str] = field(None, help="the implicit PRM to start from (a LoRA adapter or a model folder from "
                                          "`implicit-prm train`); default: the initial policy with a fresh LoRA "
                                          "adapter (zero process rewards at the start, as PRIME starts)")
    algorithm: Literal["prime", "rloo"] = field("prime", help="prime: process + outcome rewards; rloo: outcome "
                                                              "only (same trainer and budget, no PRM)")
    prm_update: Literal["online", "frozen"] = field("online", help="update the PRM on each rollout batch, or not")
    update_order: Literal["after", "before"] = field("after", help="after: each PRM mini-batch's rewards come "
                                                                   "from the pass before its step; before: update "
                                                                   "first, then score again")
    prompt_template: str = field(DEFAULT_PROMPT, help="user message; {question} is replaced by the problem")
    n_samples: int = field(4, help="samples per prompt (the RLOO group, TRL's num_generations)")
    prompts_per_step: int = field(16, help="prompts per rollout batch (all processes together)")
    steps_per_generation: int = field(4, help="policy optimiser steps per rollout batch (TRL's)")
    max_steps: int = field(8, help="rollout batches to train on")
    max_new_tokens: int = field(256, help="max tokens per completion")
    temperature: float = field(1.0, help="sampling temperature")
    lr: float = field(5e-7, help="policy learning rate (the reference's 7B full fine-tune value)")
    max_grad_norm: float = field(1.0, help="policy gradient clipping")
    epsilon: float = field(0.2, help="PPO clip range")
    lora: bool = field(True, help="train the policy as a LoRA adapter (the PRM is one too)")
    lora_r: int = field(16, help="LoRA rank (policy and a fresh PRM)")
    lora_alpha: int = field(32, help="LoRA alpha")
    beta: float = field(0.05, help="beta of the PRM's CE loss")
    prm_lr: float = field(1e-6, help="PRM learning rate")
    prm_grad_clip: float = field(10.0, help="PRM gradient clipping")
    prm_mini_batches: int = field(4, help="PRM optimiser steps per rollout batch")
    acc_low: float = field(0.2, help="keep prompts whose accuracy over their samples is at least this")
    acc_high: float = field(0.8, help="... and at most this")
    baseline: Literal["code", "eq5"] = field("code", help="process-reward RLOO baseline: the reference code's or "
                                                          "the paper's Eq. 5 (same return at t = 0)")
    granularity: Literal["token", "whole"] = field("token", help="process rewards per token, or summed at the end")
    save_every: int = field(1, help="checkpoint every N rollout batches")
    gradient_checkpointing: bool = field(True, help="recompute activations in the backward pass (TRL's default; "
                                                    "off is faster where memory allows, as for small models on CPU)")
    precision: Literal["fp32", "bf16"] = field("fp32", help="bf16 (autocast) or fp32", aliases=("dtype",))
    report_to: str = field("none", help="TRL's trackers: none, tensorboard, wandb, ...")
    seed: int = field(0, help="seed of sampling and initialisation")

    def __post_init__(self):
        for name in ("n_samples", "prompts_per_step", "steps_per_generation", "max_steps", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': must be >= 1")
        if self.n_samples < 2:
            raise ConfigError("field 'n_samples': leave-one-out baselines need at least 2 samples per prompt")
        if (self.prompts_per_step * self.n_samples) % self.steps_per_generation:
            raise ConfigError(f"field 'steps_per_generation': {self.steps_per_generation} does not divide the "
                              f"rollout batch of {self.prompts_per_step} x {self.n_samples} completions")
        if "{question}" not in self.prompt_template:
            raise ConfigError("field 'prompt_template' must contain {question}")
        if self.baseline not in BASELINES:
            raise ConfigError(f"field 'baseline': one of {', '.join(BASELINES)}")


def _dataset(spec: str, template: str, limit: int | None = None):
    from datasets import Dataset

    problems = load_problems(spec)[:limit]
    return Dataset.from_list([{"prompt": [{"role": "user", "content": template.format(question=p.question)}],
                               "answer": p.answer, "id": p.id} for p in problems])


def _prm(cfg: RLConfig, dtype):
    """(PRM, separate reference or None): a fresh LoRA adapter on the initial policy, or a trained PRM."""
    lora = LoraSpec(cfg.lora_r, cfg.lora_alpha)
    if cfg.prm is None:
        return load_model(cfg.model, dtype, lora), None
    trainable = cfg.prm_update == "online"
    prm = load_model(cfg.prm, dtype, lora if trainable else None)
    if hasattr(prm, "disable_adapter"):
        return prm, None
    prm.requires_grad_(trainable)
    return prm, load_model(cfg.model, dtype)


def last_checkpoint(output: Path) -> Optional[str]:
    steps = [int(m.group(1)) for p in output.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return str(output / f"checkpoint-{max(steps)}") if steps else None


def rl(cfg: RLConfig) -> dict:
    """Train; returns the final log entry. Resumes from the last checkpoint in `output` when there is one."""
    from peft import LoraConfig
    from trl import GRPOConfig

    from .prime import CorrectnessReward, PrimeSettings, PrimeTrainer

    train_set = _dataset(cfg.problems, cfg.prompt_template)  # bad problems are refused before anything is written
    eval_set = _dataset(cfg.eval_problems, cfg.prompt_template, cfg.n_eval) if cfg.eval_problems else None
    out = Path(cfg.output)
    saved = out / "rl_config.json"
    # a field added since the run started, left at its default, does not make it another run
    diff = changed_fields(read_json_file(saved), asdict(cfg), field_defaults(RLConfig)) if saved.exists() else []
    if diff:
        raise ConfigError(f"{saved}: a run with another config is there (fields {diff}); use a new --output")
    write_json(saved, asdict(cfg))
    dtype = torch.float32
    tok = load_tokenizer(cfg.model)
    policy = load_model(cfg.model, dtype)
    prime = PrimeSettings(algorithm=cfg.algorithm, update="none" if cfg.prm_update == "frozen" else cfg.update_order,
                          beta=cfg.beta, prm_lr=cfg.prm_lr, prm_grad_clip=cfg.prm_grad_clip,
                          prm_mini_batches=cfg.prm_mini_batches, granularity=cfg.granularity,
                          baseline=cfg.baseline, acc_low=cfg.acc_low, acc_high=cfg.acc_high)
    prm, ref = _prm(cfg, dtype) if cfg.algorithm == "prime" else (None, None)
    batch = cfg.prompts_per_step * cfg.n_samples
    evaluating = cfg.eval_problems is not None
    args = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=batch // cfg.steps_per_generation,
        steps_per_generation=cfg.steps_per_generation, num_generations=cfg.n_samples,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, learning_rate=cfg.lr,
        max_grad_norm=cfg.max_grad_norm, epsilon=cfg.epsilon, beta=0.0, loss_type="bnpo",
        max_steps=cfg.max_steps * cfg.steps_per_generation, lr_scheduler_type="constant", warmup_steps=0,
        save_strategy="steps", save_steps=cfg.save_every * cfg.steps_per_generation, logging_steps=1,
        report_to=cfg.report_to, seed=cfg.seed, bf16=cfg.precision == "bf16",
        use_cpu=not torch.cuda.is_available(), eval_strategy="steps" if evaluating and cfg.eval_every else "no",
        eval_steps=(cfg.eval_every * cfg.steps_per_generation) if cfg.eval_every else None,
        per_device_eval_batch_size=cfg.n_samples * 16, num_generations_eval=cfg.n_samples,  # 64 sequences
        eval_on_start=evaluating and cfg.eval_every > 0 and last_checkpoint(out) is None,  # the initial policy
        gradient_checkpointing=cfg.gradient_checkpointing, disable_tqdm=False, save_only_model=False)
    trainer = PrimeTrainer(
        model=policy, reward_funcs=[CorrectnessReward()], args=args,
        train_dataset=train_set, eval_dataset=eval_set,
        processing_class=tok, prm=prm, ref=ref, prime=prime,
        peft_config=LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear",
                               task_type="CAUSAL_LM") if cfg.lora else None)
    trainer.train(resume_from_checkpoint=last_checkpoint(out))
    if evaluating and (not cfg.eval_every or cfg.max_steps % cfg.eval_every):  # else the last step evaluated
        trainer.evaluate()
    trainer.save_model(str(out / "policy"))
    if trainer.accelerator.is_main_process:  # every logged metric, the final evaluation's included
        trainer.state.save_to_json(str(out / "trainer_state.json.tmp"))
        os.replace(out / "trainer_state.json.tmp", out / "trainer_state.json")
    if trainer.prm_module is not None:
        trainer.accelerator.unwrap_model(trainer.prm_module).lm.save_pretrained(str(out / "prm"))
    return trainer.state.log_history[-1] if trainer.state.log_history else {}
