"""PRIME on TRL's GRPOTrainer: the implicit PRM's token rewards inside RL, with the PRM updated online on the
policy's own rollouts (Cui et al. 2025, arXiv 2502.01456; reference code PRIME-RL/PRIME `training/`).

`PrimeTrainer` overrides the fewest hooks of `trl.GRPOTrainer` (TRL 1.16; `pip install 'implicit-prm[rl]'`):
- `_calculate_rewards` keeps the gathered rewards of every reward function (TRL computes them for the whole
  generation batch, across processes); the first function is the grader (`CorrectnessReward`: math-verify, as
  `grade` does) and its 0/1 is each completion's correctness, the label of the PRM's loss and of the accuracy
  filter; the outcome reward is the weighted sum of all of them (extra functions add to the outcome only).
- `_generate_and_score_completions` lets TRL generate and score, then runs the PRM and its reference over TRL's
  own completion token ids (never re-tokenised text) with this package's log-prob code, takes the PRM's
  optimiser steps (`update`: "after", the reference's default: each mini-batch's rewards come from the forward
  pass made before its step; "before": update on the whole batch first, then score again; "none": a frozen PRM),
  and replaces TRL's (B,) advantages with PRIME's (B, T) ones (`advantages.prime_advantages`), which TRL's loss
  takes as they are.
- `_save_checkpoint` / `_load_optimizer_and_scheduler` save and restore the PRM (its adapter or weights) and its
  optimiser inside TRL's checkpoints, so a killed run resumes (at a rollout-batch boundary: save every
  `steps_per_generation` steps).

Differences from the reference code, deliberate: filtered groups (accuracy outside [acc_low, acc_high]) stay in the
batch with advantage 0 and are left out of the PRM's loss and of every batch statistic, where the reference samples
more prompts until the batch is full of kept groups; so a PRIME step here may train on fewer groups. Process
rewards enter the advantages with weight `process_coef` 1, as in the reference code's RLOO (its `rm_coef` 5 scales
only a logged reward).

Data parallelism: each process scores its own completions; the token rewards are gathered (padded to the longest)
so every group's leave-one-out baselines, the batch normalisation and the whitening see the whole batch, and each
process keeps its rows. The PRM is prepared by the same accelerator as the policy (DDP), and its mini-batch loss is
scaled so that the averaged gradient is the mean over every process's kept rows.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import torch
from trl import GRPOTrainer

from ..data.grading import grade
from ..data.trl_formats import completion_text
from ..models.logprobs import TokenLogProbs
from .advantages import BASELINES, accuracy_filter, pairwise_accuracy, prime_advantages, prm_loss, token_rewards

UPDATES = ("after", "before", "none")
PRM_DIR = "prm"


@dataclasses.dataclass
class PrimeSettings:
    """PRIME's own settings (the reference code's defaults; its learning rate is for 7B full fine-tuning)."""

    algorithm: str = "prime"  # "prime" or "rloo" (outcome rewards only: no PRM is run)
    update: str = "after"  # "after", "before" or "none" (a frozen PRM)
    beta: float = 0.05  # of the PRM's CE loss (beta_train)
    prm_lr: float = 1e-6
    prm_grad_clip: float = 10.0
    prm_mini_batches: int = 4  # PRM optimiser steps per rollout batch (the reference: 1,024 / 256)
    granularity: str = "token"  # "token" or "whole"
    baseline: str = "code"  # "code" (compute_rloo_returns) or "eq5" (the paper's Eq. 5)
    acc_low: float = 0.2
    acc_high: float = 0.8
    process_coef: float = 1.0
    normalize: bool = True  # prime_norm: batch_norm

    def __post_init__(self):
        for name, value, allowed in (("algorithm", self.algorithm, ("prime", "rloo")),
                                     ("update", self.update, UPDATES), ("baseline", self.baseline, BASELINES),
                                     ("granularity", self.granularity, ("token", "whole"))):
            if value not in allowed:
                raise ValueError(f"{name} {value!r}: expected one of {', '.join(allowed)}")


class CorrectnessReward:
    """The grader as a TRL reward function: 1.0 when the completion's final answer equals the row's `answer`
    (math-verify, as `implicit-prm grade`), else 0.0; logs the share of completions with an answer."""

    __name__ = "correct"

    def __init__(self, field: str = "answer"):
        self.field = field

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        golds = kwargs[self.field]
        grades = [grade(completion_text("<completions>", i + 1, "completions", c, allow_empty=True), str(g))
                  for i, (c, g) in enumerate(zip(completions, golds))]
        if "log_metric" in kwargs and grades:  # TRL's per-batch metric hook: the answered rate apart from accuracy
            kwargs["log_metric"]("answered", sum(g.status != "no_answer" for g in grades) / len(grades))
        return [float(g.correct) for g in grades]


def _response_layout(prompt_ids, prompt_mask, completion_ids, completion_mask, pad: int):
    """Each row as its real prompt tokens then its completion, right-padded: (ids, mask, start, positions), where
    `positions` marks, among the predicted tokens ids[:, start + 1:], those of the completion."""
    rows, spans = [], []
    for p, pm, c, cm in zip(prompt_ids, prompt_mask, completion_ids, completion_mask):
        prompt = p[pm.bool()].tolist()
        n = int(cm.sum())
        rows.append(prompt + c[:n].tolist())
        spans.append((len(prompt), n))
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=completion_ids.device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=completion_ids.device)
    start = max(min(p for p, _ in spans) - 1, 0)
    positions = torch.zeros(ids.shape[0], width - 1 - start, dtype=torch.bool, device=ids.device)
    for i, (p, n) in enumerate(spans):
        positions[i, p - 1 - start:p - 1 - start + n] = True
    return ids, mask, start, positions, spans


def _to_completion_grid(values: torch.Tensor, start: int, spans, width: int) -> torch.Tensor:
    """(B, T') log-probs of ids[:, start + 1:] -> (B, width) over completion positions (0 past each end)."""
    out = values.new_zeros(values.shape[0], width)
    for i, (p, n) in enumerate(spans):
        out[i, :n] = values[i, p - 1 - start:p - 1 - start + n]
    return out


class PrimeTrainer(GRPOTrainer):
    """GRPOTrainer with PRIME's dense implicit rewards and online PRM updates (see the module docstring).

    `prm`: the implicit PRM, a causal LM, usually a peft model (a LoRA adapter: its reference is the same weights
    with the adapter disabled); `ref`: a separate frozen reference LM, when `prm` is not a peft model. Both start
    as the policy's initial model, so process rewards start at 0. The first reward function is the grader."""

    def __init__(self, *args, prm=None, ref=None, prime: PrimeSettings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.prime = prime or PrimeSettings()
        self._rewards_per_func = None
        self.prm_module = self.prm_optimizer = self.ref = None
        if self.prime.algorithm == "prime":
            if prm is None:
                raise ValueError("PRIME needs a PRM (prm=...); algorithm 'rloo' runs without one")
            if ref is None and not hasattr(prm, "disable_adapter"):
                raise ValueError("a PRM that is not a peft model needs its reference (ref=...)")
            prm.to(self.accelerator.device)
            if ref is not None:
                self.ref = TokenLogProbs(ref.to(self.accelerator.device).eval())
            params = [p for p in prm.parameters() if p.requires_grad]
            if self.prime.update == "none" or not params:  # a frozen PRM: no optimiser, and nothing for DDP to sync
                if self.prime.update != "none":
                    raise ValueError("the PRM has no trainable parameters; load it trainable or use update 'none'")
                prm.requires_grad_(False)
                self.prm_module = TokenLogProbs(prm.eval())
            else:
                optimizer = torch.optim.AdamW(params, lr=self.prime.prm_lr)
                self.prm_module, self.prm_optimizer = self.accelerator.prepare(TokenLogProbs(prm), optimizer)

    # ---------------------------------------------------------------- TRL's hooks
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        return self.prime_step(out, self._rewards_per_func) if self.model.training else out

    def prime_step(self, out: dict, rewards_per_func: torch.Tensor) -> dict:
        """TRL's local batch `out` with PRIME's (B, T) advantages, given every process's rewards (B_global, F)."""
        rpf = torch.nan_to_num(rewards_per_func, nan=0.0)
        correct = rpf[:, 0]
        outcome = (rpf * self.reward_weights.to(rpf.device)[None]).sum(1)
        k = self.num_generations
        kept = accuracy_filter(correct, k, self.prime.acc_low, self.prime.acc_high)
        b = out["completion_ids"].shape[0]
        rows = slice(self.accelerator.process_index * b, (self.accelerator.process_index + 1) * b)
        mask = out["completion_mask"].float()
        if self.prime.algorithm == "prime":
            process = self._prm_rewards(out, correct[rows], kept, rows)
        else:
            process = torch.zeros_like(mask)
        process_g, mask_g = self._gather_grid(process), self._gather_grid(mask)
        adv = prime_advantages(process_g, outcome.to(process_g.dtype), mask_g, k, kept, self.prime.baseline,
                               normalize=self.prime.normalize, process_coef=self.prime.process_coef)
        out["advantages"] = adv[rows, :mask.shape[1]].to(mask.dtype)
        self.last_batch = {"process": process_g, "mask": mask_g, "outcome": outcome, "correct": correct,
                           "kept": kept, "advantages": adv}  # the whole batch's, for logging and tests
        metrics = self._metrics["train"]
        metrics["prime/kept_groups"].append(kept.float().mean().item())
        if self.prime.algorithm == "prime":
            metrics["prime/prm_pairwise_acc"].append(pairwise_accuracy(process_g.sum(1), correct, k).item())
            metrics["prime/process_return_mean"].append((process_g.sum(1)).mean().item())
        return out

    # ---------------------------------------------------------------- the PRM
    def _gather_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B_local, T_local) -> (B_global, T_max): padded to the longest completion of any process, gathered."""
        x = self.accelerator.pad_across_processes(x.contiguous(), dim=1, pad_index=0)
        return self.accelerator.gather(x)

    def _ref_context(self):
        if self.ref is not None:
            return contextlib.nullcontext()
        return self.accelerator.unwrap_model(self.prm_module).lm.disable_adapter()

    def _logps(self, layout, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) log-probs of each completion token under the PRM and under its reference."""
        ids, mask, start, positions, spans = layout
        width = max(n for _, n in spans) if spans else 0
        with torch.no_grad():
            with self._ref_context():
                ref_model = self.ref if self.ref is not None else self.accelerator.unwrap_model(self.prm_module)
                ref = ref_model(ids, mask, start, positions)
        with contextlib.nullcontext() if grad else torch.no_grad():
            lp = self.prm_module(ids, mask, start, positions)
        return _to_completion_grid(lp, start, spans, width), _to_completion_grid(ref.float(), start, spans, width)

    def _prm_rewards(self, out: dict, correct: torch.Tensor, kept: torch.Tensor, rows: slice) -> torch.Tensor:
        """This process's (B, T) token rewards. "after": each mini-batch's rewards from the pass before its PRM
        step; "before": every step first, then the rewards of the updated PRM; "none": no step."""
        b = out["completion_ids"].shape[0]
        m = max(1, min(self.prime.prm_mini_batches, b))
        chunks = [list(range(j * b // m, (j + 1) * b // m)) for j in range(m)]
        update = self.prime.update
        rewards = self._prm_pass(out, chunks, correct, kept, rows, step=update != "none")
        if update == "before":
            rewards = self._prm_pass(out, chunks, correct, kept, rows, step=False)
        return rewards

    def _prm_pass(self, out: dict, chunks: list[list[int]], correct, kept, rows: slice, step: bool) -> torch.Tensor:
        """One pass over the mini-batches: token rewards, and with `step` the PRM's CE step on each one's kept rows
        (scaled so that DDP's averaged gradient is the mean over every process's kept rows of the mini-batch)."""
        pad = self.processing_class.pad_token_id if self.processing_class.pad_token_id is not None else 0
        tensors = (out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"])
        b, width = out["completion_ids"].shape
        kept_local, kept_all = kept[rows], kept.view(-1, b)  # (B,), (processes, B)
        rewards = torch.zeros(b, width, device=out["completion_ids"].device)
        losses = []
        for idx in chunks:
            lp, ref = self._logps(_response_layout(*(t[idx] for t in tensors), pad), grad=step)
            cmask = out["completion_mask"][idx].float()[:, :lp.shape[1]]
            if step:
                keep = kept_local[idx]
                n_all = int(kept_all[:, idx].sum())
                lp_sum, ref_sum = (lp * cmask).sum(1), (ref * cmask).sum(1)
                if keep.any():
                    ce = prm_loss(lp_sum[keep], ref_sum[keep], correct[idx][keep], self.prime.beta)
                    losses.append(ce.item())
                    loss = ce * int(keep.sum()) * self.accelerator.num_processes / n_all
                else:  # nothing kept here: a zero loss still joins DDP's gradient all-reduce
                    loss = lp_sum.sum() * 0.0
                self.accelerator.backward(loss)
                norm = self.accelerator.clip_grad_norm_(self.prm_module.parameters(), self.prime.prm_grad_clip)
                self._metrics["train"]["prime/prm_grad_norm"].append(float(norm))
                self.prm_optimizer.step()
                self.prm_optimizer.zero_grad(set_to_none=True)
            rewards[idx, :lp.shape[1]] = token_rewards(lp.detach(), ref, cmask, self.prime.granularity)
        if losses:
            self._metrics["train"]["prime/prm_loss"].append(sum(losses) / len(losses))
        return rewards

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.prm_module is None or not self.args.should_save:
            return
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}", PRM_DIR)
        self.accelerator.unwrap_model(self.prm_module).lm.save_pretrained(folder)
        if self.prm_optimizer is not None:
            torch.save(self.prm_optimizer.state_dict(), os.path.join(folder, "optimizer.pt"))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.prm_module is None or checkpoint is None:
            return
        folder = os.path.join(checkpoint, PRM_DIR)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{checkpoint}: no {PRM_DIR}/ with the PRM's state (saved by PrimeTrainer)")
        lm = self.accelerator.unwrap_model(self.prm_module).lm
        if hasattr(lm, "load_adapter"):
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            set_peft_model_state_dict(lm, load_peft_weights(folder, device=str(self.accelerator.device)))
        else:
            from transformers import AutoModelForCausalLM

            lm.load_state_dict(AutoModelForCausalLM.from_pretrained(folder).state_dict())
        if self.prm_optimizer is not None:
            self.prm_optimizer.load_state_dict(torch.load(os.path.join(folder, "optimizer.pt"),
                                                          map_location=self.accelerator.device))
