"""FLOPs ledger: what each command ran through a model, counted by kind and phase, written beside its output and read
back (the `implicit-prm flops` verb that sums ledgers is eval/flops.py).

Conventions (also written into every ledger's `notes`):
  P         the parameters a token's forward pass multiplies by: every parameter except the input-embedding lookup
            (a gather, no FLOPs), with the LM head's vocab x hidden matmul counted once. Tied embeddings
            (SmolLM2) share the head with the embedding, so "all parameters minus the embedding" would drop the
            head, about 28.3M of SmolLM2-135M's forward (49152 x 576): `compute_params` counts it.
  weights   forward 2P per token; training 6P per token for a full fine-tune (forward 2P, backward through the
            activations 2P, weight gradients 2P); LoRA about 4P (frozen weights get no gradient; the adapter's
            own FLOPs, rank r << hidden, are left out). Kaplan et al. 2020, "Scaling Laws for Neural Language
            Models", Sec. 2.1.
  attention Kaplan et al. 2020, Table 1: a forward token costs 2 n_layer n_ctx d_attn for QK^T and the value sum.
            We use each token's own causal context (token t of a sequence attends t tokens), so a sequence of T
            tokens has n_ctx summed to T(T+1)/2 (`causal_context_sum`). Training costs 3x the forward attention
            (both operands of each product need a gradient), with or without LoRA.
  generate  every prefilled prompt token and every generated token is one forward token (KV cache).
  simulated the built-in data generator writes text without a model: its tokens are counted as if the run's
            policy model (by default SmolLM2-135M-Instruct, `SMOLLM2_135M`) had generated them.

Recording, in a command (see `Ledger`):
    ledger = Ledger.load_or_new(output, ModelShape.from_model(model, name), command="score")  # adds to a resume
    ledger.add_forward(lengths, kind="score")                 # lengths: tokens of each sequence run
    ledger.write(output)                                      # -> <output>.flops.json, or <dir>/flops.json
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..core.errors import InputError
from ..core.io import read_json_file, write_json
from .counting import SMOLLM2_135M, ModelShape, causal_context_sum, token_flops

SCHEMA = "implicit-prm/flops/v1"
MODES = ("generate", "forward", "train")
PHASES = {"data": "data collection", "training": "training", "scoring": "scoring/reference"}
DEFAULT_PHASE = {"generate": "data", "forward": "scoring", "train": "training"}
NOTES = [
    "P = every parameter but the input-embedding lookup, with the LM head's vocab x hidden matmul counted once "
    "(also when tied to the embedding)",
    "weights: forward 2P per token; full fine-tune 6P per trained token; LoRA 4P (no weight gradients for frozen "
    "weights; adapter FLOPs left out)",
    "attention (Kaplan et al. 2020, Table 1): 2 n_layer d_attn per token per token of causal context; a sequence of "
    "T tokens has T(T+1)/2 context in all; training 3x the forward attention",
    "generation: each prefilled prompt token and each generated token is one forward token (KV cache)",
    "simulated: text written without a model is counted as if the run's policy model had generated it",
]













@dataclass
class KindCount:
    """What one kind of work ran: sequences, tokens and their summed causal context (generation also splits the
    tokens into prefilled prompt tokens and generated ones)."""

    phase: str
    mode: str
    sequences: int = 0
    tokens: int = 0
    context_sum: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0


def ledger_path(output: str | os.PathLike) -> Path:
    """Where a command's ledger goes: <dir>/flops.json for an output directory (one that exists, or a path ending
    in a separator), else <output>.flops.json beside the output file."""
    text = os.fspath(output)
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        return path / "flops.json"
    return path.with_name(path.name + ".flops.json")


@dataclass
class Ledger:
    """The FLOPs one command spent, by kind. Record with add_generation / add_forward / add_train, then write().

    A resumed command loads its earlier ledger with `load_or_new` and adds only what the resumed run processed;
    a command that redoes everything starts a new Ledger instead. Write it when its output is written (and at
    each checkpoint), so the ledger covers what the kept output took.
    """

    shape: ModelShape
    command: str
    method: Optional[str] = None
    lora: bool = False
    simulated: bool = False
    policy_model: Optional[str] = None
    kinds: dict[str, KindCount] = dataclasses.field(default_factory=dict)

    @classmethod
    def simulated_policy(cls, command: str, shape: ModelShape | None = None, **kw) -> "Ledger":
        """A ledger for text written without a model, counted as the policy `shape` (default SmolLM2-135M)."""
        shape = shape or ModelShape.from_config(SMOLLM2_135M)
        return cls(shape, command, simulated=True, policy_model=shape.name, **kw)

    @classmethod
    def load_or_new(cls, output: str | os.PathLike, shape: ModelShape, command: str, **kw) -> "Ledger":
        """The ledger beside `output` to add to (a resumed run), else a new one; one for another model or command
        is an InputError naming the file and field."""
        path = ledger_path(output)
        if not path.exists():
            return cls(shape, command, **kw)
        old = read_ledger(path)
        for name, mine, theirs in (("command", command, old.command), ("model", shape.name, old.shape.name),
                                   ("params", shape.params, old.shape.params), ("lora", kw.get("lora", False),
                                                                                old.lora)):
            if mine != theirs:
                raise InputError(path, None, name, f"this ledger counts {theirs!r}, the run has {mine!r}; "
                                 "remove it to start counting afresh")
        return old

    def _kind(self, kind: str, mode: str, phase: str | None) -> KindCount:
        phase = phase or DEFAULT_PHASE[mode]
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, got {phase!r}")
        entry = self.kinds.setdefault(kind, KindCount(phase, mode))
        if (entry.mode, entry.phase) != (mode, phase):
            raise ValueError(f"kind {kind!r} is already counted as {entry.mode} in {entry.phase}")
        return entry

    def add_generation(self, prompt: int, generated: int, prefill: bool = True, kind: str = "generation",
                       phase: str | None = None) -> None:
        """One generated sequence: `generated` tokens after a `prompt`-token prompt. prefill=False when the prompt
        was already prefilled for another sequence of the batch (its KV cache reused): then it costs nothing here,
        though it still sits in the generated tokens' context."""
        e, prompt, generated = self._kind(kind, "generate", phase), int(prompt), int(generated)
        e.sequences += 1
        e.prompt_tokens += prompt if prefill else 0
        e.generated_tokens += generated
        e.tokens += (prompt if prefill else 0) + generated
        e.context_sum += (causal_context_sum(prompt) if prefill else 0) + causal_context_sum(generated, prompt)

    def _add(self, mode: str, lengths: int | Iterable[int], kind: str, phase: str | None) -> None:
        e = self._kind(kind, mode, phase)
        for n in [lengths] if isinstance(lengths, int) else lengths:
            e.sequences += 1
            e.tokens += int(n)
            e.context_sum += causal_context_sum(int(n))

    def add_forward(self, lengths: int | Iterable[int], kind: str = "score", phase: str | None = None) -> None:
        """Forward-only sequences of these token lengths (an int: one sequence): kind "score", "reference",
        "label", ... The phase defaults to scoring; a training run's reference pass is phase="training"."""
        self._add("forward", lengths, kind, phase)

    def add_train(self, lengths: int | Iterable[int], kind: str = "train", phase: str | None = None) -> None:
        """Sequences run forward and backward (every epoch counts again); LoRA or full as the ledger's `lora`."""
        self._add("train", lengths, kind, phase)

    def add_continuation(self, pieces: Iterable[tuple[int, int]], kind: str = "score",
                         phase: str | None = None) -> None:
        """Forward sequences run after a cached prefix, as (cached, new) token counts: only the new tokens run, and
        each attends to the cached ones too (2 new after 3 cached: context 4 + 5 = 9)."""
        e = self._kind(kind, "forward", phase)
        for start, n in pieces:
            e.sequences += 1
            e.tokens += int(n)
            e.context_sum += causal_context_sum(int(n), int(start))

    def absorb(self, other: "Ledger") -> None:
        """Add another ledger's counts (the same model's: a resumed run's earlier parts) to this one."""
        if (other.shape.name, other.shape.params) != (self.shape.name, self.shape.params):
            raise ValueError(f"cannot add a ledger of {other.shape.name} to one of {self.shape.name}")
        for kind, e in other.kinds.items():
            mine = self._kind(kind, e.mode, e.phase)
            for name in ("sequences", "tokens", "context_sum", "prompt_tokens", "generated_tokens"):
                setattr(mine, name, getattr(mine, name) + getattr(e, name))

    def kind_flops(self, kind: str) -> tuple[int, int]:
        e, s = self.kinds[kind], self.shape
        return token_flops(e.mode, e.tokens, e.context_sum, s.params, s.n_layer, s.d_attn, self.lora)

    def by_phase(self) -> dict[str, int]:
        out = dict.fromkeys(PHASES, 0)
        for kind, e in self.kinds.items():
            out[e.phase] += sum(self.kind_flops(kind))
        return out

    def total(self) -> int:
        return sum(self.by_phase().values())

    def to_dict(self) -> dict:
        kinds = {}
        for kind, e in self.kinds.items():
            entry = {k: v for k, v in dataclasses.asdict(e).items()
                     if e.mode == "generate" or k not in ("prompt_tokens", "generated_tokens")}
            w, a = self.kind_flops(kind)
            kinds[kind] = {**entry, "flops": {"weights": w, "attention": a, "total": w + a}}
        return {"schema": SCHEMA, "command": self.command, "method": self.method, "model": self.shape.name,
                "params": self.shape.params, "n_layer": self.shape.n_layer, "d_attn": self.shape.d_attn,
                "lora": self.lora, "simulated": self.simulated, "policy_model": self.policy_model, "kinds": kinds,
                "flops_by_phase": self.by_phase(), "total_flops": self.total(), "notes": NOTES}

    def write(self, output: str | os.PathLike) -> Path:
        """Write atomically to ledger_path(output); returns that path."""
        path = ledger_path(output)
        write_json(path, self.to_dict())
        return path


def _check(path, data: dict, key: str, kind, where: str = "", optional: bool = False):
    name, value = f"{where}{key}", data.get(key)
    if value is None:
        if optional:
            return None
        raise InputError(path, None, name, "missing" if key not in data else "may not be null")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InputError(path, None, name, f"expected a non-negative integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise InputError(path, None, name, f"expected {kind.__name__}, got {value!r}")
    return value


def read_ledger(path: str | os.PathLike) -> Ledger:
    """A ledger written by Ledger.write; anything malformed is an InputError naming the file and the field."""
    return ledger_from_dict(read_json_file(path), path)


def ledger_from_dict(data, path: str | os.PathLike) -> Ledger:
    """A ledger from Ledger.to_dict's output (read from `path`, named in errors)."""
    if not isinstance(data, dict):
        raise InputError(path, None, None, "expected a JSON object (a FLOPs ledger)")
    if data.get("schema") != SCHEMA:
        raise InputError(path, None, "schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    params, n_layer, d_attn = (_check(path, data, k, int) for k in ("params", "n_layer", "d_attn"))
    shape = ModelShape(_check(path, data, "model", str), params, n_layer, d_attn)
    ledger = Ledger(shape, _check(path, data, "command", str), _check(path, data, "method", str, optional=True),
                    _check(path, data, "lora", bool), bool(_check(path, data, "simulated", bool, optional=True)),
                    _check(path, data, "policy_model", str, optional=True))
    for kind, e in _check(path, data, "kinds", dict).items():
        where = f"kinds.{kind}."
        if not isinstance(e, dict):
            raise InputError(path, None, where[:-1], f"expected an object, got {e!r}")
        mode, phase = _check(path, e, "mode", str, where), _check(path, e, "phase", str, where)
        for name, value, allowed in (("mode", mode, MODES), ("phase", phase, PHASES)):
            if value not in allowed:
                raise InputError(path, None, where + name, f"expected one of {list(allowed)}, got {value!r}")
        counts = {k: _check(path, e, k, int, where) for k in ("sequences", "tokens", "context_sum")}
        if mode == "generate":
            counts.update({k: _check(path, e, k, int, where) for k in ("prompt_tokens", "generated_tokens")})
            if counts["prompt_tokens"] + counts["generated_tokens"] != counts["tokens"]:
                raise InputError(path, None, where + "tokens", "must equal prompt_tokens + generated_tokens")
        ledger.kinds[kind] = KindCount(phase, mode, **counts)
    total = _check(path, data, "total_flops", int)
    if total != ledger.total():
        raise InputError(path, None, "total_flops", f"{total} does not match the counts ({ledger.total()} FLOPs "
                         "by this ledger's conventions): the file was edited or written by another version")
    return ledger










