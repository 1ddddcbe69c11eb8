"""The `implicit-prm score` command: read, encode, resume, score (sharded over processes), write atomically."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

from ..core.config import field
from ..core.distributed import process_state
from ..core.io import write_jsonl
from ..core.results import write_result
from ..core.resume import PartialFile, run_signature
from ..data import read_samples
from ..data.settings import InputSettings
from ..data.sources import input_source
from ..flops.ledger import Ledger
from ..steps.encoding import Encoded
from .load import load_scorer
from .protocol import LocalScorer
from .settings import ScorerSettings

# Fields that may change between a killed run and its restart without changing the records.
FREE_ON_RESUME = ("output", "progress", "batch_tokens", "logprob_cache")


@dataclass
class ScoreConfig(ScorerSettings, InputSettings):
    input: str = field(help="responses to score (JSONL/JSON, any input format incl. PRMBench), or a benchmark name "
                            "processbench:<gsm8k|math|olympiadbench|omnimath>")
    output: str = field(help="output JSONL: one record per response with step_rewards, q_values, scores")
    split: Literal["auto", "steps", "markers", "blank", "regex"] = field(
        "auto", help="step boundaries: the input's steps list, 'Step k:' markers, blank lines, or --step-regex")
    step_regex: Optional[str] = field(None, help="with --split regex: a regex matching the text that ends a step")
    step_separator: str = field("\n\n", help="joins the 'steps' of pre-split inputs")
    max_length: int = field(4096, help="max tokens of prompt + response")
    overlong: Literal["error", "skip", "truncate"] = field("error", help="longer sequences: fail, leave out, or "
                                                                         "score only the first max_length tokens")
    token_rewards: bool = field(False, help="also write per-token rewards")
    batch_tokens: int = field(8192, help="padded tokens per batch")
    progress: bool = field(True, help="show progress bars")


def score(cfg: ScoreConfig) -> Path:
    """Score every response of `cfg.input` and write them, in input order, to `cfg.output`.

    Launched as several processes, the input is sharded: each process scores every world-th batch of one global
    batch plan and streams its records to its own partial file; the main process merges them in input order, so
    the output is the same file a single process writes. A killed run resumes from the partial files.
    """
    state = process_state()
    out = Path(cfg.output)
    samples = read_samples(cfg.input, cfg.step_separator, input_format=cfg.input_format,
                           columns=cfg.column_map, step_tag=cfg.step_tag)
    prm = load_scorer(cfg, device=str(cfg.torch_device(state.device)), max_length=cfg.max_length,
                      batch_tokens=cfg.batch_tokens, overlong=cfg.overlong, separator=cfg.step_separator)
    encs = prm.encode(samples, cfg.split, cfg.step_regex, cfg.step_separator)
    source = Path(input_source(cfg.input))  # a file, or a benchmark name's local file ('hf://...': no stat)
    st = source.stat() if source.exists() else None
    signature = run_signature(cfg, FREE_ON_RESUME, input_size=st and st.st_size, input_mtime_ns=st and st.st_mtime_ns,
                              prm_key=prm.own_key, ref=prm.reference, resolved_beta=prm.resolved_settings().get("beta"),
                              resolved_precision=prm.precision)
    partial = PartialFile(out.with_name(out.name + ".partial"), signature, state.process_index)
    done = {item["i"]: item["r"] for item in partial.resume(state)}
    if done and state.is_main_process:
        print(f"[implicit-prm] resuming: {len(done)} of {len(samples)} responses already scored", flush=True)
    todo = [i for i, e in enumerate(encs) if e is not None and i not in done]
    with partial.appender() as f:
        if todo:
            prm.score_encoded([encs[i] for i in todo], acc=state, show=cfg.progress and state.is_main_process,
                              token_rewards=cfg.token_rewards, on_record=lambda j, rec: f.add({"i": todo[j], "r": rec}))
    state.wait_for_everyone()
    if state.is_main_process:
        done = {item["i"]: item["r"] for item in partial.read()}
        resolved = dataclasses.replace(cfg, **prm.resolved_settings())
        score_ledger(prm, encs).write(out)  # before the output: one with its config beside it is finished
        n = write_result(out, scored_records(samples, encs, done), resolved, write=write_jsonl)
        partial.remove()
        n_skipped = sum(e is None for e in encs)
        print(f"[implicit-prm] wrote {n} scored responses to {out}"
              + (f" ({n_skipped} over max_length left out)" if n_skipped else "")
              + (f", scored by {state.num_processes} processes" if state.num_processes > 1 else ""), flush=True)
    state.wait_for_everyone()  # the other processes return once the output is written
    return out


def score_ledger(prm: LocalScorer, encs: Sequence[Encoded | None]) -> Ledger:
    """The forward tokens of scoring: the scorer's pass over every scored sequence and, for an implicit PRM, the
    reference's (counted in full even where the log-prob cache served them, or a shared prompt ran once)."""
    led = Ledger(prm.flops_shape, "score", lora=prm.lora)
    lengths = [len(e) for e in encs if e is not None]
    led.add_forward(lengths, kind="score")
    if prm.reference is not None:
        led.add_forward(lengths, kind="reference")
    return led


def scored_records(samples, encs, done: dict[int, dict]):
    """Each input record with its step spans and rewards, in input order; skipped (overlong) ones left out."""
    for i, (s, e) in enumerate(zip(samples, encs)):
        if e is None:
            continue
        extra = {"n_steps_total": len(e.spans)} if e.truncated else {}
        yield {**s.record, "step_spans": [list(x) for x in e.spans[:e.n_steps]], **done[i], **extra}
