"""Score responses with an implicit PRM: step rewards, q-values and response scores; resumable, atomic, cached ref."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch

from . import rewards as R
from .batching import response_logprobs
from .config import field, save_config, to_dict
from .data import read_samples
from .encoding import Encoded, Encoder, encode_samples
from .errors import UserError
from .io import atomic_open, read_json_file, write_jsonl
from .logprobs import TokenLogProbs, has_accelerator, resolve_precision
from .losses import DEFAULT_BETA
from .models import METADATA_FILE, adapter_base, check_same_tokenizer, fingerprint, load_model, load_tokenizer, resolve
from .reference import RefTable, open_cache, reference_logprobs


@dataclass
class ScoreConfig:
    input: str = field(help="responses to score (JSONL/JSON, any input format)")
    output: str = field(help="output JSONL: one record per response with step_rewards, q_values, scores")
    prm: str = field(help="the trained implicit PRM (dir from `implicit-prm train`, any causal LM, or adapter)")
    ref: Optional[str] = field(None, help="reference model (default: from the PRM's implicit_prm.json; for a LoRA "
                                          "PRM, its base with the adapter disabled)")
    reference_free: bool = field(False, help="reward = beta * log pi_theta, no reference model")
    beta: Optional[float] = field(None, help="reward scale (default: the PRM's training beta, else 0.05)")
    split: Literal["auto", "steps", "markers", "blank", "regex"] = field(
        "auto", help="step boundaries: the input's steps list, 'Step k:' markers, blank lines, or --step-regex")
    step_regex: Optional[str] = field(None, help="with --split regex: a regex matching the text that ends a step")
    step_separator: str = field("\n\n", help="joins the 'steps' of pre-split inputs")
    template: Literal["auto", "chat", "plain"] = field("auto", help="prompt format (default: as the PRM was trained)")
    system_prompt: Optional[str] = field(None, help="system message for the chat template (default: as the PRM "
                                                    "was trained)")
    max_length: int = field(4096, help="max tokens of prompt + response")
    overlong: Literal["error", "skip", "truncate"] = field("error", help="longer sequences: fail, leave out, or "
                                                                         "score only the first max_length tokens")
    token_rewards: bool = field(False, help="also write per-token rewards")
    batch_tokens: int = field(8192, help="padded tokens per batch")
    dtype: Literal["auto", "bf16", "fp32"] = field("auto", help="bf16 autocast where fast, else fp32")
    ref_cache: str = field("", help="reference log-prob cache file ('' = default, 'none' = off)")
    progress: bool = field(True, help="show progress bars")


def prm_metadata(prm: str) -> dict:
    path = Path(resolve(prm)) / METADATA_FILE
    return read_json_file(path) if path.exists() else {}


def reference_spec(prm: str, ref: str | None, reference_free: bool, meta: dict | None = None
                   ) -> tuple[str | None, bool]:
    """(reference model spec, whether the PRM's own base weights with the adapter disabled serve as reference)."""
    if reference_free:
        return None, False
    base = adapter_base(resolve(prm))
    ref = ref or (prm_metadata(prm) if meta is None else meta).get("reference_model") or base
    if ref is None:
        raise UserError(f"'{prm}' has no {METADATA_FILE} naming its reference model: pass --ref MODEL, "
                        "or --reference-free to score with beta * log pi_theta")
    return ref, base is not None and ref in (base, resolve(base))


def rewards_record(enc: Encoded, policy: np.ndarray, ref: np.ndarray | None, beta: float,
                   with_tokens: bool) -> dict:
    """step_rewards, q_values, scores (and optionally token_rewards) of one response."""
    as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    tok_r = R.token_rewards(as_t(policy), None if ref is None else as_t(ref), beta)  # (T,)
    step_r = R.step_rewards(tok_r, torch.tensor(enc.token_steps, dtype=torch.long), enc.n_steps)  # (n_steps,)
    rec = {"step_rewards": step_r.tolist(), "q_values": R.q_values(step_r).tolist(),
           "scores": R.aggregate(step_r.tolist())}
    if with_tokens:
        rec["token_rewards"] = tok_r.tolist()
    if enc.truncated:
        rec["truncated"] = True
    return rec


class ImplicitPRM:
    """Python API: `ImplicitPRM.from_pretrained(dir).score(prompt, steps)` -> step rewards, q-values, scores."""

    def __init__(self, model: TokenLogProbs, tokenizer, ref: str | None, ref_in_memory: bool, beta: float,
                 template: str = "auto", dtype: str = "auto", max_length: int = 4096, ref_cache: str = "",
                 device: str | torch.device = "cpu", system_prompt: str | None = None, max_tokens: int = 8192,
                 overlong: str = "error"):
        self.model, self.tok, self.beta = model, tokenizer, beta
        self.ref, self.ref_in_memory, self.ref_cache = ref, ref_in_memory, ref_cache
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, dtype)
        self.encoder = Encoder(tokenizer, template, max_length, overlong, system_prompt)
        self.max_tokens = max_tokens  # padded tokens per batch
        self._own_key: str | None = None  # fingerprint of the PRM as it computes, for cached log-probs

    @classmethod
    def from_pretrained(cls, prm: str, ref: str | None = None, reference_free: bool = False,
                        beta: float | None = None, device: str | None = None, meta: dict | None = None,
                        **kw) -> "ImplicitPRM":
        meta = prm_metadata(prm) if meta is None else meta
        ref_spec, in_memory = reference_spec(prm, ref, reference_free, meta)
        tok = load_tokenizer(prm)
        if ref_spec and not in_memory:
            check_same_tokenizer(tok, load_tokenizer(ref_spec), prm, ref_spec)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = TokenLogProbs(load_model(prm)).to(device).eval()
        kw.setdefault("template", meta.get("template", "auto"))
        kw.setdefault("system_prompt", meta.get("system_prompt"))
        return cls(model, tok, ref_spec, in_memory, beta if beta is not None else meta.get("beta", DEFAULT_BETA),
                   device=device, **kw)

    @property
    def own_key(self) -> str:
        """Fingerprint (adapters included) and precision of the PRM as it computes; memoized."""
        if self._own_key is None:
            self._own_key = f"{fingerprint(self.model.lm, base_only=False)}:{self.precision}"
        return self._own_key

    def reference(self, encs: Sequence[Encoded], acc, show: bool) -> RefTable | None:
        if self.ref is None:
            return None
        return reference_logprobs(self.ref, self.model if self.ref_in_memory else None, encs, self.tok.pad_token_id,
                                  acc, self.precision, self.ref_cache, self.max_tokens, show)

    def score_encoded(self, encs: Sequence[Encoded], acc=None, show: bool = False, token_rewards: bool = False,
                      on_record=None) -> list[dict]:
        """Reference pass (cached), then the PRM pass by length buckets; `on_record(i, rec)` streams results.

        Under several processes (`acc`), the reference pass is shared and each process scores its share of the PRM
        pass's batches: the returned list holds None where another process scored the response."""
        acc = acc or _SingleProcess(self.device)
        table = self.reference(encs, acc, show)
        out: list[dict | None] = [None] * len(encs)
        # The PRM's own log-probs may be cached already: scoring the untrained reference model itself (e.g. as a
        # reference-free baseline) after the reference pass costs nothing.
        own = open_cache(self.ref_cache, self.own_key)
        keys = own.keys(encs) if own else [None] * len(encs)
        cached = own.get(keys) if own else {}
        if own:
            own.close()

        def finished(idx: list[int], arrays: list[np.ndarray]) -> None:
            for i, a in zip(idx, arrays):
                ref = None if table is None else table.logps(encs[i])
                out[i] = rewards_record(encs[i], a, ref, self.beta, token_rewards)
                if on_record is not None:
                    on_record(i, out[i])

        hit = [i for i, k in enumerate(keys) if k in cached]
        if hit:
            finished(hit, [cached[keys[i]] for i in hit])
        # Identical (prompt, response) pairs, common among sampled solutions, go through the model once.
        copies: dict[tuple, list[int]] = {}
        for i, k in enumerate(keys):
            if k not in cached:
                copies.setdefault((tuple(encs[i].prompt_ids), tuple(encs[i].response_ids)), []).append(i)
        firsts = [group[0] for group in copies.values()]
        groups = list(copies.values())
        computed: list[tuple[str, np.ndarray]] = []

        def on_batch(idx: list[int], arrays: list[np.ndarray]) -> None:
            finished([i for j in idx for i in groups[j]], [a for j, a in zip(idx, arrays) for _ in groups[j]])
            if keys[firsts[0]] is not None:
                computed.extend((keys[firsts[j]], a) for j, a in zip(idx, arrays))

        response_logprobs(self.model, [encs[i] for i in firsts], self.tok.pad_token_id, self.device, self.precision,
                          self.max_tokens, desc="PRM pass", show=show, on_batch=on_batch,
                          shard=(acc.process_index, acc.num_processes))
        # Keep the PRM's own log-probs: scoring the same responses again with this PRM (another reward mode,
        # reference-free, another split) needs no forward pass. One writer per run: the main process.
        if computed and acc.is_main_process:
            with open_cache(self.ref_cache, self.own_key) as own:
                own.put(computed)
        return out  # type: ignore[return-value]

    def score(self, prompt: str, steps: list[str] | str, separator: str = "\n\n", split: str = "auto") -> dict:
        """Score one response given as a list of steps (or a string, split by `split`)."""
        if isinstance(steps, str):
            response, spans = steps, R.step_spans(steps, None, split, None, separator)
        else:
            response = separator.join(steps)
            spans = R.spans_from_steps(steps, separator)
        return self.score_encoded([self.encoder.encode(prompt, response, spans)])[0]


class _SingleProcess:
    """The few accelerate.Accelerator attributes the reference pass uses, for single-process API calls."""

    process_index, num_processes, is_main_process = 0, 1, True

    def __init__(self, device):
        self.device = device

    def wait_for_everyone(self):
        pass


def process_state():
    """accelerate's PartialState when launched as several processes (torchrun / accelerate launch), else one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        return PartialState(cpu=not has_accelerator())
    return _SingleProcess(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def _partial_files(partial: Path) -> list[Path]:
    """The main process's partial file and those of the other ranks of a sharded run."""
    return [partial] + sorted(partial.parent.glob(partial.name + ".[0-9]*"))


def score(cfg: ScoreConfig) -> Path:
    """The `implicit-prm score` command: read, encode, resume, score, write atomically.

    Launched as several processes, the input is sharded: each process scores every world-th batch of one global
    batch plan and streams its records to its own partial file; the main process merges them in input order, so
    the output is the same file a single process writes.
    """
    state = process_state()
    rank, world, main = state.process_index, state.num_processes, state.is_main_process
    out = Path(cfg.output)
    partial = out.with_name(out.name + ".partial")
    mine = partial if rank == 0 else partial.with_name(f"{partial.name}.{rank}")
    samples = read_samples(cfg.input, cfg.step_separator)
    meta = prm_metadata(cfg.prm)
    template = cfg.template if cfg.template != "auto" else meta.get("template", "auto")
    system_prompt = cfg.system_prompt if cfg.system_prompt is not None else meta.get("system_prompt")
    prm = ImplicitPRM.from_pretrained(cfg.prm, cfg.ref, cfg.reference_free, cfg.beta, template=template,
                                      dtype=cfg.dtype, max_length=cfg.max_length, ref_cache=cfg.ref_cache,
                                      system_prompt=system_prompt, max_tokens=cfg.batch_tokens,
                                      overlong=cfg.overlong, device=str(state.device), meta=meta)
    encs = encode_samples(prm.encoder, samples, cfg.split, cfg.step_regex, cfg.step_separator)

    signature = _signature(cfg, prm)
    done = _read_partials(partial, signature)
    if done and main:
        print(f"[implicit-prm] resuming: {len(done)} of {len(samples)} responses already scored", flush=True)
    state.wait_for_everyone()  # every process has read the same finished records
    if main:  # one file again: drops torn last lines and any stale run's records
        _rewrite_partial(partial, signature, done)
        for extra in _partial_files(partial)[1:]:
            extra.unlink()
    state.wait_for_everyone()
    if rank > 0:
        _rewrite_partial(mine, signature, {})
    todo = [i for i, e in enumerate(encs) if e is not None and i not in done]
    n_skipped = sum(e is None for e in encs)

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(mine, "a", encoding="utf-8") as f:
        def on_record(j: int, rec: dict) -> None:
            f.write(json.dumps({"i": todo[j], "r": rec}) + "\n")
            f.flush()
        if todo:
            prm.score_encoded([encs[i] for i in todo], acc=state, show=cfg.progress and main,
                              token_rewards=cfg.token_rewards, on_record=on_record)
        f.flush()
        os.fsync(f.fileno())
    state.wait_for_everyone()
    if not main:
        state.wait_for_everyone()  # until the main process has written the output
        return out
    done = _read_partials(partial, signature)

    def records():
        for i, (s, e) in enumerate(zip(samples, encs)):
            if e is None:
                continue
            extra = {"n_steps_total": len(e.spans)} if e.truncated else {}
            yield {**s.record, "step_spans": [list(x) for x in e.spans[:e.n_steps]], **done[i], **extra}

    n = write_jsonl(out, records())
    resolved = dataclasses.replace(cfg, beta=prm.beta, template=template, ref=prm.ref, system_prompt=system_prompt)
    save_config(resolved, out.with_name(out.name + ".config.json"))
    for p in _partial_files(partial):
        p.unlink()
    print(f"[implicit-prm] wrote {n} scored responses to {out}"
          + (f" ({n_skipped} over max_length left out)" if n_skipped else "")
          + (f", scored by {world} processes" if world > 1 else ""), flush=True)
    state.wait_for_everyone()
    return out


def _signature(cfg: ScoreConfig, prm: ImplicitPRM) -> str:
    """What an interrupted run's records depend on: settings, input file, PRM and reference weights."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in ("output", "progress", "batch_tokens", "ref_cache")}
    st = Path(cfg.input).stat()
    return hashlib.sha1(json.dumps([settings, st.st_size, st.st_mtime_ns, prm.own_key, prm.ref,
                                    prm.beta, prm.precision], sort_keys=True).encode()).hexdigest()


def _read_partials(partial: Path, signature: str) -> dict[int, dict]:
    """Finished records in the partial files of all ranks (a sharded run may resume with another world size)."""
    done: dict[int, dict] = {}
    for p in _partial_files(partial):
        done.update(_read_partial(p, signature))
    return done


def _read_partial(path: Path, signature: str) -> dict[int, dict]:
    """Finished records of an interrupted run of the same job; a torn last line is dropped."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header.get("signature") != signature:
        if lines:
            print(f"[implicit-prm] {path} is from a different input, PRM or settings: starting over", flush=True)
        return {}
    done = {}
    for line in lines[1:]:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            break
        done[item["i"]] = item["r"]
    return done


def _rewrite_partial(path: Path, signature: str, done: dict[int, dict]) -> None:
    with atomic_open(path) as f:
        f.write(json.dumps({"signature": signature}) + "\n")
        for i, r in done.items():
            f.write(json.dumps({"i": i, "r": r}) + "\n")
