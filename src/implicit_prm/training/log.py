"""The training log: one JSON line per optimizer step (loss, rewards, accuracy, lr, tokens/s) and the progress bar;
resumes by keeping the steps before the restored checkpoint, and carries on their token count and elapsed time."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from .. import losses
from ..core.io import atomic_open
from ..core.progress import progress
from ..core.resume import read_jsonl_prefix
from .tracking import step_values


class TrainLog:
    """train_log.jsonl (main process) and the progress bar. On resume, lines past the restored step, and a torn
    last line, are dropped first; `tokens` and `elapsed_s` go on from the last kept line, so they count the whole
    training (the time between a kill and the resume, and the loading, are not counted)."""

    def __init__(self, path: Path, start: int, acc, total: int, desc: str, show: bool, every: int = 0):
        self.path, self.acc, self.main = path, acc, acc.is_main_process
        self.eval_path = path.with_name("eval_log.jsonl")
        kept = {path: []}  # a resumed run keeps the records up to its checkpoint; only the main process reads them
        if self.main:
            for p in (path, self.eval_path):
                kept[p] = [r for r in (read_jsonl_prefix(p) if p.exists() else []) if r.get("step", math.inf) <= start]
                if p == path or kept[p]:
                    with atomic_open(p) as f:
                        f.writelines(json.dumps(r) + "\n" for r in kept[p])
        last = kept[path][-1] if kept[path] else {}
        self.bar = progress(total, desc, "step", show and self.main, start, every)
        self.tokens, self.elapsed0 = int(last.get("tokens", 0)), float(last.get("elapsed_s", 0.0))
        self.t0 = time.time()

    def step(self, step: int, outputs: list[losses.LossOutput], n_tokens: int, lr: float, grad_norm) -> None:
        """Gather rewards and labels from every process; log the mean loss, rewards by label, and accuracy."""
        acc = self.acc
        # step objectives give one reward per labelled step, so processes hold different counts: pad to gather
        r = torch.cat([o.rewards.float() for o in outputs])
        lab = torch.cat([o.labels.to(r.device).float() for o in outputs])
        r, lab = (acc.gather(acc.pad_across_processes(t, pad_index=-1)) for t in (r, lab))
        r, lab = r[lab >= 0], lab[lab >= 0]  # labels are in [0, 1]; -1 is padding
        loss = acc.reduce(sum(o.loss.detach() for o in outputs) / len(outputs), reduction="mean").item()
        self.tokens += int(acc.reduce(torch.tensor(n_tokens, device=r.device), reduction="sum").item())
        elapsed = self.elapsed0 + time.time() - self.t0
        rec = {"step": step, "loss": loss, "lr": lr, "reward_correct": _mean(r[lab == 1]),
               "reward_incorrect": _mean(r[lab == 0]), "acc": ((r > 0) == (lab >= 0.5)).float().mean().item(),
               "grad_norm": None if grad_norm is None else float(grad_norm), "tokens": self.tokens,
               "elapsed_s": elapsed, "tokens_per_s": self.tokens / elapsed}
        if self.main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{rec['acc']:.2f}")
            acc.log(step_values(rec), step=step)  # to the --report-to trackers (none: nothing)
            self.bar.update(1)

    def eval(self, step: int, metrics: dict) -> None:
        """One evaluation's numbers: a line of eval_log.jsonl, a printed line, the trackers (eval/...)."""
        if not self.main:
            return
        rec = {"step": step, **metrics}
        with open(self.eval_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        shown = ", ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items() if v is not None)
        print(f"[implicit-prm] eval at step {step}: {shown}", flush=True)
        self.acc.log({f"eval/{k[5:]}": v for k, v in metrics.items() if v is not None}, step=step)

    def close(self) -> None:
        self.bar.close()


def _mean(t: torch.Tensor) -> float | None:
    return t.float().mean().item() if t.numel() else None
