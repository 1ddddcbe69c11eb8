"""The `implicit-prm search` command: for each problem, search with a policy and a PRM (strategies.py), write the
chosen solution, every explored step with its reward, and the budget spent; resumable per problem."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..core.config import field
from ..core.errors import ConfigError
from ..core.io import write_jsonl
from ..core.progress import progress
from ..core.results import write_result
from ..core.resume import PartialFile, run_signature
from ..data.benchmarks import Problem, load_problems
from ..data.grading import grade
from ..flops.ledger import Ledger, ledger_from_dict
from ..models.loading import DEFAULT_MODEL, load_model, load_tokenizer
from ..scoring.load import load_scorer
from ..scoring.remote import RemoteScorer
from ..scoring.settings import ScorerSettings
from .policies import HFPolicy, SolverPolicy
from .scoring import IncrementalImplicitScorer, RemoteTextScorer, WholeTextScorer
from .strategies import Proposer, Search, SearchLedgers, StepScorer, run_strategy

FREE_ON_RESUME = ("output", "progress", "log_every")


@dataclass
class SearchConfig(ScorerSettings):
    problems: str = field(help="problems: a JSONL/JSON file ({prompt|problem|question, answer}; built-in data "
                               "works) or a name (gsm8k:test, math500, ...)")
    output: str = field(help="output JSONL: one record per problem")
    policy: str = field("solver", help="'solver': the built-in simulated solver (built-in problems only), or a "
                                       "causal LM (embedded name, local dir, hub id)")
    strategy: Literal["best-of-n", "beam", "dvts"] = field("beam", help="search strategy")
    n: int = field(8, help="beams (best-of-n: samples; dvts: n // beam_width subtrees of beam_width)")
    beam_width: int = field(4, help="beam, dvts: steps sampled from each kept beam")
    agg: Literal["min", "last", "sum", "mean"] = field("min", help="a beam's score from its step rewards")
    max_steps: int = field(12, help="steps at most per solution")
    token_budget: int = field(0, help="generated tokens per problem after which no beam is extended (0: none)")
    temperature: float = field(0.8, help="LM policy: sampling temperature")
    max_step_tokens: int = field(160, help="LM policy: tokens per step at most")
    separator: str = field("\n\n", help="the text that ends a step")
    incremental: bool = field(True, help="implicit PRMs: extend KV caches step by step (else re-score whole "
                                         "partial solutions)")
    n_problems: int = field(0, help="the first N problems only (0: all)")
    seed: int = field(0, help="seed of the policy's samples (each problem draws its own from it)")
    solver_seed: int = field(-1, help="solver policy: the error model's seed (-1: the problem record's "
                                      "solver.seed, else 0)")
    progress: bool = field(True, help="show progress")
    log_every: int = field(0, help="without a terminal (a log file): a progress line every N problems (0: every "
                                   "tenth of the work)")


    def __post_init__(self):
        if self.n < 1 or self.beam_width < 1 or self.max_steps < 1:
            raise ConfigError("fields 'n', 'beam_width' and 'max_steps' must be at least 1")
        if self.strategy in ("beam", "dvts") and self.n < self.beam_width:
            raise ConfigError(f"field 'n' ({self.n}) must be at least beam_width ({self.beam_width}) for "
                              f"{self.strategy}")


def build(cfg: SearchConfig) -> tuple[Proposer, StepScorer]:
    """(policy, step scorer) for the config; each knows its own FLOPs shape."""
    if cfg.prm.startswith(("http://", "https://")):
        scorer: StepScorer = RemoteTextScorer(RemoteScorer(cfg.prm), cfg.separator)
        tok = None
    else:
        prm = load_scorer(cfg)
        tok = prm.tok
        if cfg.incremental and prm.format == "implicit":
            scorer = IncrementalImplicitScorer(prm, cfg.separator)
        else:
            scorer = WholeTextScorer(prm, cfg.separator)
    if cfg.policy == "solver":
        tok = tok or load_tokenizer(DEFAULT_MODEL)
        return SolverPolicy(tok, max(cfg.solver_seed, 0), separator=cfg.separator), scorer
    lm_tok = load_tokenizer(cfg.policy)
    lm_tok.padding_side = "left"
    where = cfg.torch_device()
    model = load_model(cfg.policy, attn_implementation=cfg.attn_implementation, device=where).to(where).eval()
    share = tok is not None and lm_tok.get_vocab() == tok.get_vocab()
    return HFPolicy(model, lm_tok, cfg.temperature, max_step_tokens=cfg.max_step_tokens, separator=cfg.separator,
                    share_ids=share, name=cfg.policy), scorer


def new_ledgers(policy: Proposer, scorer: StepScorer) -> SearchLedgers:
    """Fresh FLOPs ledgers (flops.Ledger) for the policy and the scorer (None where the shape is unknown)."""
    pol = (Ledger.simulated_policy("search", policy.flops_shape) if policy.simulated
           else Ledger(policy.flops_shape, "search"))
    prm = None if scorer.flops_shape is None else Ledger(scorer.flops_shape, "search", lora=scorer.lora)
    return SearchLedgers(pol, prm)


def budget(generated: int, prm_tokens: int, rounds: int, explored: int, ledgers: SearchLedgers) -> dict:
    """What a problem's search spent: tokens, and FLOPs by the ledgers' conventions (flops/ledger.py: weights 2P per
    token, attention over each token's causal context). The policy's FLOPs (the solver's counted as SmolLM2-135M
    generating its steps with per-beam KV caches; an LM policy's as it ran them, its prefix prefilled again each
    round), and the PRM's with its reference (what ran: incremental scoring runs only each new step; a remote
    PRM's are unknown, null)."""
    return {"generated_tokens": generated, "prm_tokens": prm_tokens, "rounds": rounds, "explored_steps": explored,
            **{f"{k}_flops": None if led is None else led.total() for k, led in ledgers.items()}}


def problem_seed(seed: int, problem) -> int:
    """The seed of one problem's samples: drawn from --seed and the problem, so that problems do not share random
    draws (with one stream for all, the solver policy would err at the same steps of every problem)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}\0{problem.id}\0{problem.question}".encode()).digest()[:4], "big")


def search_problem(cfg: SearchConfig, problem: Problem, policy: Proposer, scorer: StepScorer,
                   ledgers: SearchLedgers | None = None) -> dict:
    """Search one problem; its output record. Its FLOPs are counted in `ledgers` (new_ledgers; fresh ones when not
    given)."""

    t0 = time.time()
    tokens0 = scorer.prm_tokens
    ledgers = new_ledgers(policy, scorer) if ledgers is None else ledgers
    s = Search(problem.question, policy, scorer, cfg.agg, cfg.max_steps, cfg.token_budget,
               problem_seed(cfg.seed, problem), ledgers)
    best, final = run_strategy(s, cfg.strategy, cfg.n, cfg.beam_width)
    response = cfg.separator.join(best.steps)
    rec = {"problem_id": problem.id, "prompt": problem.question, "answer": problem.answer,
           "strategy": cfg.strategy, "n": cfg.n, "beam_width": cfg.beam_width, "agg": cfg.agg,
           "response": response, "steps": best.steps, "step_rewards": best.rewards,
           "q_values": [sum(best.rewards[:k + 1]) for k in range(len(best.rewards))], "score": s.score(best),
           "finished": bool(s.explored[best.id]["finished"]) if best.id >= 0 else False, "final_candidates": [b.id for b in final], "chosen": best.id,
           "explored": s.explored,
           "budget": budget(s.generated_tokens, scorer.prm_tokens - tokens0, s.rounds, len(s.explored), ledgers),
           "wall_s": time.time() - t0}
    if problem.answer is not None:
        g = grade(response, str(problem.answer))
        rec.update(extracted_answer=g.extracted, correct=g.correct)
    return rec


def search(cfg: SearchConfig) -> Path:
    """Search every problem, resuming finished ones from <output>.partial; write the output atomically, with the
    FLOPs ledgers of the PRM (<output>.flops.json) and the policy (<output>.policy.flops.json)."""


    problems = load_problems(cfg.problems)
    if cfg.n_problems:
        problems = problems[:cfg.n_problems]
    if cfg.solver_seed < 0 and cfg.policy == "solver":
        seeds = {p.meta.get("solver", {}).get("seed") for p in problems if isinstance(p.meta.get("solver"), dict)}
        cfg = replace(cfg, solver_seed=seeds.pop() if len(seeds) == 1 else 0)
    out = Path(cfg.output)
    partial = PartialFile(out.with_name(out.name + ".partial"), run_signature(cfg, FREE_ON_RESUME))
    items = {item["i"]: item for item in partial.read() if "flops" in item}  # compatibility: partials from before search counted FLOPs lack "flops"; searched again; remove in 0.3 (with a
    # signature bump)
    done = {i: item["r"] for i, item in items.items()}
    if done:
        print(f"[implicit-prm] resuming: {len(done)} of {len(problems)} problems already searched", flush=True)
    partial.restart(items.values())
    policy, scorer = build(cfg)
    totals = new_ledgers(policy, scorer)  # the whole run's, summed from each problem's (exact across resumes)
    for item in items.values():
        for k, d in item["flops"].items():
            if d is not None:
                getattr(totals, k).absorb(ledger_from_dict(d, partial.path))
    bar = progress(len(problems), f"search ({cfg.strategy})", "problem", cfg.progress, len(done), cfg.log_every)
    with partial.appender() as f:
        for i, problem in enumerate(problems):
            if i in done:
                continue
            ledgers = new_ledgers(policy, scorer)
            done[i] = search_problem(cfg, problem, policy, scorer, ledgers)
            f.add({"i": i, "r": done[i], "flops": {k: None if v is None else v.to_dict() for k, v in ledgers.items()}})
            for k, v in ledgers.items():
                if v is not None:
                    getattr(totals, k).absorb(v)
            bar.update(1)
    bar.close()
    records = [done[i] for i in range(len(problems))]
    if totals.prm is not None:  # before the output: one with its config beside it is finished
        totals.prm.write(out)
    totals.policy.write(out.with_name(out.name + ".policy"))
    write_result(out, records, cfg, write=write_jsonl)
    partial.remove()
    graded = [r["correct"] for r in records if "correct" in r]
    tokens = sum(r["budget"]["generated_tokens"] for r in records)
    print(f"[implicit-prm] search: {len(records)} problems, {cfg.strategy} n={cfg.n}"
          + (f", accuracy {100 * sum(graded) / len(graded):.1f}%" if graded else "")
          + f", {tokens / max(len(records), 1):.0f} generated tokens per problem; wrote {out}", flush=True)
    return out
