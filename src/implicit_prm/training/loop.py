"""Train a PRM: one accelerate loop for every objective, cached reference, resumable.

The implicit objectives (ce, dpo, nca, kto) learn from outcome labels; the step objectives train the baselines
of steps/tags.py in the same loop (step_bce: a Math-Shepherd PRM from step labels; orm: an outcome verifier).
train() reads top to bottom: prepare the examples, load the policy, the reference pass (cached; the step
objectives have none), the optimizer, restore a checkpoint, then the loop; each step calls the objective's loss
once, whatever the objective.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import losses
from ..core.config import field_defaults, resolve_aliases, save_config
from ..core.distributed import has_accelerator, is_main_rank
from ..core.errors import ConfigError
from ..core.io import read_json_file, write_json
from ..core.precision import autocast_context, resolve_compile, resolve_precision
from ..core.resume import check_same_run, run_signature
from ..flops.counting import ModelShape
from ..flops.ledger import Ledger
from ..models.heads import StepLogits
from ..models.loading import LoraSpec, check_same_tokenizer, load_model, load_tokenizer
from ..models.logprobs import TokenLogProbs
from ..models.metadata import PRMMetadata
from ..scoring.reference import RefTable, reference_logprobs
from ..steps.batching import SharedPack, first_response_position, pad_batch, response_mask
from ..steps.encoding import Encoded
from ..steps.tags import StepTag, batch_inputs
from .card import RunFacts
from .checkpoints import is_finished, restore, save_checkpoint, save_final
from .config import TrainConfig
from .data import encode_data
from .evaluate import eval_sequences, eval_set, evaluate
from .log import TrainLog
from .plan import Example, batch_rows, make_plan, micro_batches, mismatched_pairs
from .tracking import logging_dir, resolve_trackers, tracker_config

# Fields that may change between a killed run and its restart without changing the result.
FREE_ON_RESUME = ("output", "checkpoint_every", "keep_checkpoints", "progress", "batch_tokens", "logprob_cache",
                  "save_precision", "log_every", "report_to", "logging_dir", "eval_data", "eval_every", "compile")
SIGNATURE_FILE = "run_signature.json"





@dataclass
class Prepared:
    """Everything the loop reads that comes from the data: tokenizer, encoded responses, examples, step plan."""

    tok: object
    encs: list[Encoded | None]
    examples: list[Example]
    plan: list[list[int]]  # plan[step]: the examples (positions) of that optimizer step's global batch
    tag: StepTag | None = None  # step objectives: the tag and +/- tokens
    targets: list[list[float] | None] | None = None  # step objectives: each response's label per read position


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the output directory holding the final model."""
    from accelerate.utils import set_seed

    out = Path(cfg.output)
    if is_finished(out):
        check_resumable(cfg, out, None)  # a finished model of other settings or data is refused, not returned
        print(f"[implicit-prm] {out} already holds a finished model; nothing to do")
        return out
    acc = start_accelerator(cfg)
    check_resumable(cfg, out, acc.num_processes)
    acc.init_trackers(out.name or "implicit-prm", config=tracker_config(cfg))
    set_seed(cfg.seed)
    device, precision = acc.device, resolve_precision(acc.device, cfg.precision)
    data = prepare_examples(cfg, acc, precision)
    ev = eval_set(encode_data(cfg, cfg.eval_data, data.tok, data.tag), cfg.batch_size) if cfg.eval_data else None
    lora = LoraSpec(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target) if cfg.lora else None
    lm = load_model(cfg.model, torch.float32, lora, cfg.attn_implementation, device, cfg.max_length)
    if cfg.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if data.tag is not None:  # a step objective: logits at the tags, no reference
        model, ref = StepLogits(lm, data.tag.plus_id, data.tag.minus_id).to(device), None
    else:
        model = TokenLogProbs(lm, cfg.logprob_chunk).to(device)
        # before any update and any restored checkpoint
        ref = reference_pass(cfg, acc, model, data, precision, eval_sequences(cfg, ev) if ev else [])
    share = cfg.share_prompts and data.tag is None and model.can_pack
    if cfg.share_prompts and not share and acc.is_main_process:
        print("[implicit-prm] warning: --share-prompts needs an implicit objective and eager or SDPA attention over "
              "attention-only layers; training without it", file=sys.stderr, flush=True)
    if resolve_compile(device, cfg.compile, len(data.plan)):
        if acc.is_main_process:
            print("[implicit-prm] compiling the decoder (torch.compile, dynamic shapes): the first steps take "
                  "minutes", flush=True)
        lm.get_decoder().compile(dynamic=True)  # in place: the state dict's keys, and so checkpoints, are unchanged

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused_adamw(acc, params))
    warmup = int(cfg.warmup_ratio * len(data.plan))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.schedule, warmup, len(data.plan)))
    model, opt = acc.prepare(model, opt)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP2 replaces them with DTensor shards
    acc.register_for_checkpointing(sched)
    start = restore(acc, out)
    log = TrainLog(out / "train_log.jsonl", start, acc, len(data.plan), f"train {cfg.objective}", cfg.progress,
                   cfg.log_every)

    model.train()
    for step in range(start, len(data.plan)):
        mbs = micro_batches(data.plan[step], cfg.batch_size, cfg.grad_accum, acc.process_index, acc.num_processes)
        outputs, n_tokens = [], 0
        for j, mb in enumerate(mbs):
            batch = [data.examples[i] for i in mb]
            with acc.no_sync(model) if j < len(mbs) - 1 else contextlib.nullcontext():
                output = micro_batch_loss(cfg, model, batch, data.encs, ref, data.tok.pad_token_id, device, precision,
                                          data.targets, share)
                acc.backward(output.loss / len(mbs))
            outputs.append(output)
            n_tokens += sum(len(data.encs[r]) for ex in batch for r in ex.rows)
        grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        log.step(step + 1, outputs, n_tokens, lr, grad_norm)
        if ev is not None and (step + 1 == len(data.plan) or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            lm_model = None if data.tag is not None else acc.unwrap_model(model)
            log.eval(step + 1, evaluate(cfg, model, lm_model, ev, ref, data.tok.pad_token_id, device, precision,
                                        micro_batch_loss))
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < len(data.plan):
            save_checkpoint(acc, out, step + 1, cfg.keep_checkpoints)
    log.close()
    for tracker in acc.trackers:  # flush and close them (acc.end_training would also end the process group)
        tracker.finish()
    if acc.is_main_process:
        train_ledger(cfg, data, lm, acc.num_processes, ref is not None).write(out)  # out/flops.json
    facts = RunFacts(len(data.examples), len(data.encs), sum(e is None for e in data.encs), len(data.plan),
                     cfg.save_precision)  # for the model card
    save_final(acc, model, data.tok, out, metadata(cfg, ref, precision, data.tag), facts)
    return out


# ----------------------------------------------------------------------------- the steps of train()

def start_accelerator(cfg: TrainConfig):
    """The Accelerator of a run: on the CPU without an accelerator (so torchrun's gloo processes become one DDP
    run) or with --device cpu, logging to the --report-to trackers under logging_dir."""
    from accelerate import Accelerator

    names = resolve_trackers(cfg.report_to) if is_main_rank() else []
    acc = Accelerator(cpu=not has_accelerator() or cfg.device == "cpu", log_with=names or None,
                      project_dir=str(logging_dir(cfg)))
    check_device(cfg, acc.device, acc.num_processes)
    warn_if_fsdp_ignored(acc)
    return acc


def check_device(cfg: TrainConfig, placed, n_proc: int) -> None:
    """accelerate places a run itself (one GPU per process); a --device it did not follow is an error."""
    want = cfg.torch_device(placed)
    if n_proc == 1 and (placed.type != want.type or (want.index is not None and placed.index != want.index)):
        raise ConfigError(f"field 'device': {cfg.device} was asked for, but accelerate placed the run on {placed} "
                          "(choose a GPU with CUDA_VISIBLE_DEVICES)")


def signature(cfg: TrainConfig, n_proc: int | None) -> dict:
    """What a run's result depends on: its settings, the number of processes (it sets the global batch, so the step
    plan), and the data file's size and mtime."""
    st = Path(cfg.data).stat() if Path(cfg.data).exists() else None
    return run_signature(cfg, FREE_ON_RESUME, processes=n_proc, data_size=st and st.st_size,
                         data_mtime_ns=st and st.st_mtime_ns)


def check_resumable(cfg: TrainConfig, out: Path, n_proc: int | None) -> None:
    """A directory holding another run is refused (only FREE_ON_RESUME fields may differ). A run from before the
    signature file holds only its config."""
    saved, legacy = out / SIGNATURE_FILE, out / "train_config.json"
    if saved.exists():
        old, new = read_json_file(saved), signature(cfg, n_proc)
        if n_proc is None:  # a finished run: the number of processes it was trained with no longer matters
            del new["processes"]  # (changed_fields ignores keys only the saved run has)
        check_same_run(old, new, out, field_defaults(TrainConfig))
    elif legacy.exists():  # compatibility: a directory from before run signatures (only train_config.json)
        # still resumes, its former field names resolved; warn on use in 0.2, remove in 0.3
        old = resolve_aliases(TrainConfig, read_json_file(legacy), str(legacy))
        check_same_run(old, run_signature(cfg, FREE_ON_RESUME), out, field_defaults(TrainConfig))


def warn_if_fsdp_ignored(acc) -> None:
    """accelerate turns an FSDP launch config into FSDP only on GPU-like devices: CPU processes get plain DDP."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and acc.distributed_type.name != "FSDP" \
            and acc.is_main_process:
        print("[implicit-prm] warning: accelerate runs FSDP only on GPU-like devices; these CPU processes run plain "
              "DDP (docs/scaling.md)", file=sys.stderr, flush=True)


def prepare_examples(cfg: TrainConfig, acc, precision: str) -> Prepared:
    """Read and encode the data, build the objective's examples and the step plan; save the config and counts."""
    tok = load_tokenizer(cfg.model)
    if cfg.ref and cfg.ref != cfg.model:
        check_same_tokenizer(tok, load_tokenizer(cfg.ref), cfg.model, cfg.ref)
    d = encode_data(cfg, cfg.data, tok)
    encs, examples, stats, tag, targets = d.encs, d.examples, d.stats, d.tag, d.targets
    groups = [tuple(encs[ex.rows[0]].prompt_ids) for ex in examples] if cfg.share_prompts else None
    plan = make_plan(len(examples), cfg.batch_size * cfg.grad_accum * acc.num_processes, cfg.epochs, cfg.seed,
                     cfg.max_steps, groups)
    if acc.is_main_process:
        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "train_config.json")
        write_json(out / SIGNATURE_FILE, signature(cfg, acc.num_processes))
        write_json(out / "data_stats.json", stats)
        n_trunc = sum(1 for e in encs if e is not None and e.truncated)
        print(f"[implicit-prm] {cfg.objective}: {stats['n_examples']} examples from {stats['n_samples']} responses "
              + (f"({stats['n_prompts_without_pair']} of {stats['n_prompts']} prompts had no correct/incorrect "
                 f"pair and were dropped) " if "n_prompts" in stats else "")
              + (f"({stats['n_skipped_overlong']} over max_length {cfg.max_length} left out by --overlong skip) "
                 if stats["n_skipped_overlong"] else "")
              + (f"({n_trunc} truncated to max_length {cfg.max_length}) " if n_trunc else "")
              + f"-> {len(plan)} steps, precision {precision}", flush=True)
    return Prepared(tok, encs, examples, plan, tag, targets)


def reference_pass(cfg: TrainConfig, acc, model: TokenLogProbs, data: Prepared, precision: str,
                   also: list[Encoded] = ()) -> RefTable:
    """Reference log-probs of every sequence the loop will read (with KTO, also every micro-batch's mismatched
    pairs, on every process), and of `also` (the evaluation's), from the cache or computed once now."""
    needed = [e for e in data.encs if e is not None] + list(also)
    if losses.LOSSES[cfg.objective].kl_pairs:
        for global_batch in data.plan:
            for rank in range(acc.num_processes):
                for mb in micro_batches(global_batch, cfg.batch_size, cfg.grad_accum, rank, acc.num_processes):
                    needed += mismatched_pairs([data.examples[i] for i in mb], data.encs, cfg.max_length)
    own = not cfg.ref or cfg.ref == cfg.model  # the untrained policy (or LoRA base) is the reference
    return reference_logprobs(cfg.ref or cfg.model, model if own else None, needed, data.tok.pad_token_id, acc,
                              precision, cfg.logprob_cache, cfg.batch_tokens, cfg.progress and acc.is_main_process)


def train_ledger(cfg: TrainConfig, data: Prepared, lm, n_proc: int, with_reference: bool):
    """What the whole run processed (every step of the plan, whatever was resumed): the trained sequences of every
    micro-batch on every process, KTO's mismatched pairs included, and the reference's forward pass over each
    distinct sequence once, which the method needs even where this run read it from the cache."""

    shape = ModelShape.from_model(lm, cfg.model)
    if data.tag is not None:  # a step-tag scorer's head computes two logits
        shape = shape.step_tag(*lm.get_output_embeddings().weight.shape)
    led = Ledger(shape, "train", method=cfg.objective, lora=cfg.lora)
    kl = losses.LOSSES[cfg.objective].kl_pairs
    trained, pairs = [], []
    for global_batch in data.plan:
        for rank in range(n_proc):
            for mb in micro_batches(global_batch, cfg.batch_size, cfg.grad_accum, rank, n_proc):
                batch = [data.examples[i] for i in mb]
                trained += [len(data.encs[r]) for r in batch_rows(batch)[0]]
                if kl:
                    pairs += [len(e) for e in mismatched_pairs(batch, data.encs, cfg.max_length)]
    led.add_train(trained + pairs)
    if with_reference:
        led.add_forward([len(e) for e in data.encs if e is not None] + pairs, kind="reference", phase="training")
    return led


def fused_adamw(acc, params) -> bool | None:
    """The fused AdamW kernel where it is safe: one process or DDP, fp32 parameters on CPU or CUDA (see
    docs/performance.md for what it saves). FSDP and DeepSpeed keep the default: they reshape or replace the
    parameters the optimizer sees."""
    from accelerate.utils import DistributedType

    plain = acc.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    ok = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    return True if plain and ok else None


def lr_lambda(schedule: str, warmup: int, total: int):
    """LR multiplier per step: linear warmup to 1, then linear or cosine decay to 0, or constant."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
    return f


def metadata(cfg: TrainConfig, ref: RefTable | None, precision: str, tag: StepTag | None = None) -> PRMMetadata:
    step = {} if tag is None else {"kind": "step_tag", "step_tag": tag.tag, "plus_token": tag.plus,
                                   "minus_token": tag.minus,
                                   "boundary0": losses.LOSSES[cfg.objective].step_labels == "outcome"}
    return PRMMetadata(beta=cfg.beta, reference_model="" if ref is None else cfg.ref or cfg.model,
                       base_model=cfg.model, reference_fingerprint="" if ref is None else ref.fingerprint,
                       template=cfg.template, system_prompt=cfg.system_prompt, objective=cfg.objective, lora=cfg.lora,
                       precision=precision, step_separator=cfg.step_separator, max_length=cfg.max_length, **step)


# ----------------------------------------------------------------------------- one micro-batch

def sequence_logps(model, seqs: list[Encoded], pad_id: int, device, precision: str,
                   share: bool = False) -> torch.Tensor:
    """Summed log-probs of each sequence's response tokens, (B,), with grad. With `share`, a prompt with several
    responses in the batch is computed once (SharedPack; the caller checks TokenLogProbs.can_pack)."""
    if share and SharedPack.pays(seqs):
        pack = SharedPack(seqs, pad_id, device)
        with autocast_context(device, precision):
            return pack.sums(model(None, None, pack=pack))
    ids, mask = pad_batch([e.ids for e in seqs], pad_id, device)  # (B, T)
    start = first_response_position(seqs)
    resp = response_mask(seqs, start, ids.shape[1], ids.device)  # (B, T-1-start): position t predicts t+1
    with autocast_context(device, precision):
        lp = model(ids, mask, start, resp)  # (B, T-1-start), 0 off the responses
    return lp.sum(-1)


def micro_batch_loss(cfg: TrainConfig, model, batch: list[Example], encs, ref: RefTable | None, pad_id: int, device,
                     precision: str, targets: list | None = None, share: bool = False) -> losses.LossOutput:
    """The objective's LossBatch for one micro-batch (one forward over its rows and any mismatched pairs), and its
    loss. Options come from the config fields named `<objective>_<option>` (e.g. kto_desirable_weight). A step
    objective reads `targets`, each response's label per read position."""
    objective = losses.LOSSES[cfg.objective]
    rows, labels = batch_rows(batch)
    seqs = [encs[r] for r in rows]
    if objective.step_labels:
        return step_batch_loss(objective, model, seqs, [targets[r] for r in rows], labels, pad_id, device, precision)
    kl = mismatched_pairs(batch, encs, cfg.max_length) if objective.kl_pairs else []
    lp = sequence_logps(model, seqs + kl, pad_id, device, precision, share)  # (B + M,)
    ref_lp = torch.tensor([ref.sum(e) for e in seqs + kl], device=device)  # (B + M,)
    n = len(seqs)
    lb = losses.LossBatch(torch.tensor(labels, dtype=torch.float32, device=device), lp[:n], ref_lp[:n], cfg.beta,
                          kl_logps=lp[n:] if kl else None, kl_ref_logps=ref_lp[n:] if kl else None)
    return objective(lb, **objective_options(cfg))


def step_batch_loss(objective: losses.Objective, model, seqs: list[Encoded], targets: list[list[float]],
                    labels: list[int], pad_id: int, device, precision: str) -> losses.LossOutput:
    """A step objective's loss: z at every read position of the batch, laid out (B, S) with its labels and mask."""
    ids, mask, pos, counts = batch_inputs(seqs, objective.step_labels == "outcome", pad_id, device)
    with autocast_context(device, precision):
        z = model(ids, mask, pos)  # (N,) in row-major order
    step_mask = torch.zeros((len(seqs), max(counts)), dtype=torch.bool)  # (B, S)
    y = torch.zeros(step_mask.shape)
    for i, (t, c) in enumerate(zip(targets, counts)):
        step_mask[i, :c] = True
        y[i, :c] = torch.tensor(t[:c])
    step_mask, y = step_mask.to(z.device), y.to(z.device)
    logits = torch.zeros(step_mask.shape, dtype=z.dtype, device=z.device).masked_scatter(step_mask, z)  # (B, S)
    lb = losses.LossBatch(torch.tensor(labels, dtype=torch.float32, device=z.device), step_logits=logits,
                          step_labels=y, step_mask=step_mask)
    return objective(lb)


def objective_options(cfg: TrainConfig) -> dict:
    """The objective's options: the config fields named `<objective>_<option>`, by option name."""
    prefix = cfg.objective + "_"
    return {f.name[len(prefix):]: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name.startswith(prefix)}


# ----------------------------------------------------------------------------- the log



