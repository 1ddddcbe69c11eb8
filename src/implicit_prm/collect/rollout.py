"""Sample N responses per problem from any causal LM with HF generate, grade them, write the paper's rollout format."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from ..core.config import field, to_dict
from ..core.distributed import process_state
from ..core.errors import ConfigError
from ..core.io import read_json_file, read_json_records
from ..core.progress import progress
from ..core.results import config_path
from ..core.resume import PartialFile, changed_fields, run_signature
from ..data.benchmarks import load_problems
from ..data.grading import Grade, grade, summarize
from ..data.stats import write_with_stats
from ..flops.counting import ModelShape
from ..flops.ledger import Ledger
from ..models.chat import chat_text
from ..models.generation import generate
from ..models.loading import DEFAULT_MODEL, load_model, load_tokenizer
from ..models.settings import DeviceSettings
from .simulated import add_counts, generation_counts

# Fields that may change between a killed run and its restart without changing the samples.
FREE_ON_RESUME = ("output", "progress", "log_every", "limit")  # batches are slices from the start: a new limit keeps them
DEFAULT_PROMPT = ("Solve the following math problem step by step. Write each step on its own line as "
                  "'Step 1: ...', 'Step 2: ...', and so on, and put the final answer in \\boxed{{}}.\n\n{question}")


@dataclass
class RolloutConfig(DeviceSettings):
    problems: str = field(help="problems: gsm8k:train|test, math:train|test, math500, or a JSONL of "
                               "{problem|question, answer}")
    output: str = field(help="rollouts JSONL: {prompt, completions, correctness, ...} per problem")
    model: str = field(DEFAULT_MODEL, help="the model to sample from (hub id, local dir, .gguf, smollm2-135m)")
    n_samples: int = field(4, help="responses per problem")
    limit: Optional[int] = field(None, help="use only the first N problems")
    temperature: float = field(0.7, help="sampling temperature (0 = greedy)")
    top_p: float = field(0.95, help="nucleus sampling")
    max_new_tokens: int = field(512, help="max tokens per response")
    stop: list[str] = field([], help="extra stop strings")
    prompt_template: str = field(DEFAULT_PROMPT, help="user message; {question} is replaced by the problem")
    system_prompt: Optional[str] = field(None, help="system message for the chat template (default: the template's)")
    batch_size: int = field(8, help="problems per generate call")
    # compatibility: accepts the former flag --dtype and config key `dtype`; warn on use in 0.2, remove in 0.3
    precision: Literal["fp32", "bf16"] = field("fp32", help="dtype of the model weights for generation (train and "
                                                         "score keep fp32 weights and autocast)", aliases=("dtype",))
    seed: int = field(0, help="sampling seed (each batch is seeded from it, so a resumed run samples the same)")
    progress: bool = field(True, help="show a progress bar")
    log_every: int = field(0, help="without a terminal (a log file): a progress line every N problems (0: every "
                                   "tenth of the work)")

    def __post_init__(self):
        if "{question}" not in self.prompt_template:
            raise ConfigError("field 'prompt_template' must contain {question}")
        for name in ("n_samples", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}' must be >= 1")






def rollout_ledger(cfg: RolloutConfig, model, tok, records: list[dict]):
    """The FLOPs ledger of the rollouts: each problem's prompt prefilled once for its samples (as parallel sampling
    does), then each sample's tokens, measured by tokenizing the kept text again (a resumed run counts the same)."""

    led = Ledger(ModelShape.from_model(model, cfg.model), "rollout")
    counts = generation_counts(tok, [(chat_text(tok, r["prompt"], cfg.system_prompt), r["completions"])
                                     for r in records])
    return add_counts(led, counts)


def finished_output(cfg: RolloutConfig, out: Path, problems: list, show: bool = True) -> list[dict] | None:
    """The records of `out` when it is a finished output of this run: its config beside it (written last), the same
    settings but those free on resume, a problems file not modified since, and a record for each of `problems`, in
    order (a new --limit). None otherwise, with a message (where `show`) when an output will be replaced."""
    cfg_file = config_path(out)
    if not (out.exists() and cfg_file.exists()):
        return None
    saved = {k: v for k, v in read_json_file(cfg_file).items() if k != "command" and k not in FREE_ON_RESUME}
    diff = changed_fields(saved, run_signature(cfg, FREE_ON_RESUME), to_dict(RolloutConfig(problems="", output="")))
    src = Path(cfg.problems)
    if src.is_file() and src.stat().st_mtime_ns > cfg_file.stat().st_mtime_ns:
        diff.append(f"{src} modified since")
    if diff:
        if show:
            print(f"[implicit-prm] {out} holds rollouts of other settings ({', '.join(diff)}): sampling again",
                  flush=True)
        return None
    records = [rec for _, rec in read_json_records(out)]
    if [r.get("id") for r in records] != [p.id for p in problems]:
        if show:
            print(f"[implicit-prm] {out} holds rollouts of other problems (another --limit): sampling again", flush=True)
        return None
    return records


def rollout_summary(records: list[dict]) -> dict:
    """Counts of the grades (summarize) over every response of `records`."""
    return summarize([Grade(e, c, s) for r in records
                      for e, c, s in zip(r["extracted_answers"], r["correctness"], r["grade_status"])])


def rollout(cfg: RolloutConfig) -> dict:
    """Generate, grade and write rollouts; resumes from `<output>.partial` (one finished problem per line). A
    finished output of the same run is kept as it is (nothing sampled), as `train` keeps a finished model.

    Launched as several processes (torchrun / accelerate launch), process r samples every world-th batch into its
    own partial file; the main process merges them in input order. Each batch is seeded from --seed and its index,
    so the samples do not depend on the number of processes (on the same hardware)."""
    problems = load_problems(cfg.problems)[:cfg.limit]
    if not problems:
        raise ConfigError(f"{cfg.problems}: no problems")
    state = process_state()
    out = Path(cfg.output)
    finished = finished_output(cfg, out, problems, state.is_main_process)
    if finished is not None:
        if state.is_main_process:
            print(f"[implicit-prm] {out} already holds these rollouts; nothing to do", flush=True)
        return {**rollout_summary(finished), "tokens_per_s": None}
    src = Path(cfg.problems)
    facts = {"problems_size": src.stat().st_size, "problems_mtime_ns": src.stat().st_mtime_ns} if src.is_file() else {}
    partial = PartialFile(out.with_name(out.name + ".partial"), run_signature(cfg, FREE_ON_RESUME, **facts),
                          state.process_index)
    done = {rec["id"]: rec for rec in partial.resume(state)}
    if done and state.is_main_process:
        print(f"[implicit-prm] resuming: {len(done)} of {len(problems)} problems done", flush=True)
    tok = load_tokenizer(cfg.model)
    tok.padding_side = "left"  # batched generation continues from the right edge
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    where = cfg.torch_device(state.device)
    model = load_model(cfg.model, dtype, attn_implementation=cfg.attn_implementation, device=where).to(where).eval()
    batches = [problems[s:s + cfg.batch_size] for s in range(0, len(problems), cfg.batch_size)]
    mine = list(range(state.process_index, len(batches), state.num_processes))
    t0 = time.time()
    n_tokens = sample_batches(cfg, model, tok, batches, mine, done, partial, state.is_main_process)
    state.wait_for_everyone()
    summary: dict = {}
    if state.is_main_process:
        done = {rec["id"]: rec for rec in partial.read()}  # every process's batches
        records = [done[p.id] for p in problems]
        rollout_ledger(cfg, model, tok, records).write(out)  # before the data: one with its config beside is finished
        write_with_stats(out, records, cfg)  # pass@1, pass@N, majority@N, ... in <output>.stats.json
        partial.remove()
        summary = rollout_summary(records)
        summary["tokens_per_s"] = n_tokens / max(time.time() - t0, 1e-9) if n_tokens else None
        print(f"[implicit-prm] wrote {len(records)} problems x {cfg.n_samples} responses to {out}: "
              f"{summary['n_correct']}/{summary['n']} correct, {summary['n_no_answer']} without an answer, "
              f"{summary['n_error']} grading errors"
              + (f", {summary['tokens_per_s']:.1f} generated tokens/s (main process)" if n_tokens else "")
              + (f", sampled by {state.num_processes} processes" if state.num_processes > 1 else ""), flush=True)
    state.wait_for_everyone()  # the other processes return once the output is written
    return summary


def sample_batches(cfg: RolloutConfig, model, tok, batches: list, mine: list[int], done: dict, partial: PartialFile,
                   show: bool) -> int:
    """Sample, grade and append the problems of batches `mine` not yet in `done`; the tokens generated."""
    todo = sum(1 for b in mine for p in batches[b] if p.id not in done)
    bar = progress(todo, "rollout", "problem", cfg.progress and show, 0, cfg.log_every)
    n_tokens, t0 = 0, time.time()
    with partial.appender() as f:
        for b in mine:
            batch = [p for p in batches[b] if p.id not in done]
            if not batch:
                continue
            prompts = [cfg.prompt_template.format(question=p.question) for p in batch]
            chats = [chat_text(tok, u, cfg.system_prompt) for u in prompts]
            texts, n_new = generate(model, tok, chats, cfg.n_samples, cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                                    cfg.seed * 100003 + b, cfg.stop)
            n_tokens += n_new
            for i, (p, user) in enumerate(zip(batch, prompts)):
                comps = [t.strip() for t in texts[i * cfg.n_samples:(i + 1) * cfg.n_samples]]
                grades = [grade(c, p.answer) for c in comps]
                f.add({"id": p.id, "prompt": user, "problem": p.question, "answer": p.answer, "source": p.source,
                       "completions": comps, "correctness": [g.correct for g in grades],
                       "extracted_answers": [g.extracted for g in grades],
                       "grade_status": [g.status for g in grades]})
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{n_tokens / (time.time() - t0):.0f}")
    bar.close()
    return n_tokens
