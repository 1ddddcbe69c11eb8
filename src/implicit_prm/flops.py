"""FLOPs ledger: what each command ran through a model, counted by kind, and `implicit-prm flops`, which sums ledgers.

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

from .config import field
from .errors import ConfigError, InputError
from .io import read_json_file, write_json, write_text

SCHEMA = "implicit-prm/flops/v1"
TABLE_SCHEMA = "implicit-prm/flops-table/v1"
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

# SmolLM2-135M-Instruct's config.json (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct), the embedded model:
# counting the built-in data's tokens needs its shape, not its file.
SMOLLM2_135M = {"name": "smollm2-135m", "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                "tie_word_embeddings": True}


def causal_context_sum(length: int, start: int = 0) -> int:
    """Summed causal context of `length` tokens that follow `start` earlier ones: sum_{t=start+1}^{start+length} t.

    A whole sequence of T tokens: T(T+1)/2 (T=4: 1+2+3+4 = 10); 2 tokens generated after a 3-token prompt: 4+5 = 9.
    """
    whole = length * (length + 1) // 2 if isinstance(length, int) else length * (length + 1) / 2  # floats: averages
    return length * start + whole


def attention_flops(n_layer: int, d_attn: int, context_sum: int) -> int:
    """Forward attention FLOPs, 2 n_layer d_attn n_ctx per token (Kaplan et al. 2020, Table 1), over the summed
    causal context: n_layer 2, d_attn 4, one 10-token sequence (context 55) -> 2*2*4*55 = 880."""
    return 2 * n_layer * d_attn * context_sum


def token_flops(mode: str, tokens: int, context_sum: int, params: int, n_layer: int, d_attn: int,
                lora: bool = False) -> tuple[int, int]:
    """(weights, attention) FLOPs of `tokens` run in `mode`: weights 2P (generate, forward), 6P (train), 4P (train
    with LoRA) per token; attention 1x (generate, forward) or 3x (train) the forward attention."""
    weight_factor = {"generate": 2, "forward": 2, "train": 4 if lora else 6}[mode]
    return weight_factor * params * tokens, (3 if mode == "train" else 1) * attention_flops(n_layer, d_attn, context_sum)


def compute_params(model) -> int:
    """P of a loaded causal LM: the parameters other than the input and output embeddings, plus the LM head's
    vocab x hidden matmul counted once (tied or not), plus the head's bias if any. Norm weights are included."""
    heads = [m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None]
    skip = {id(p) for m in heads for p in m.parameters()}
    skip |= {id(p) for n, p in model.named_parameters() if "lora_" in n}  # a LoRA adapter's FLOPs are left out
    body = sum(p.numel() for p in model.parameters() if id(p) not in skip)  # parameters() lists a tied tensor once
    head = model.get_output_embeddings()
    if head is None:
        return body
    bias = getattr(head, "bias", None)
    return body + head.weight.shape[0] * head.weight.shape[1] + (bias.numel() if bias is not None else 0)


@dataclass(frozen=True)
class ModelShape:
    """What FLOPs depend on: P (see `compute_params`), the layers and the attention width (query heads x head dim)."""

    name: str
    params: int
    n_layer: int
    d_attn: int

    @classmethod
    def from_config(cls, cfg, name: str | None = None) -> "ModelShape":
        """From a Llama-shaped config (a dict or a transformers config), no weights: per layer q, k, v, o, the gated
        MLP (3 matrices), two norms and any biases; the final norm; the head (vocab x hidden)."""
        c = cfg if isinstance(cfg, dict) else cfg.get_text_config().to_dict()
        h, heads, inter, layers = c["hidden_size"], c["num_attention_heads"], c["intermediate_size"], c[
            "num_hidden_layers"]
        hd = c.get("head_dim") or h // heads
        kv = c.get("num_key_value_heads") or heads
        layer = 2 * h * heads * hd + 2 * h * kv * hd + 3 * h * inter + 2 * h  # q, o; k, v; MLP; norms
        layer += (heads * hd + 2 * kv * hd + h) * bool(c.get("attention_bias")) + (2 * inter + h) * bool(
            c.get("mlp_bias"))
        params = layer * layers + h + c["vocab_size"] * h  # + final norm + head
        return cls(name or c.get("name") or c.get("_name_or_path") or "unknown", params, layers, heads * hd)

    def step_tag(self, vocab: int, hidden: int) -> "ModelShape":
        """The shape of a step-tag scorer (step_tags.StepLogits): its head computes two logits, not the vocab's,
        so P counts 2 x hidden for the head instead of vocab x hidden."""
        return dataclasses.replace(self, params=self.params - vocab * hidden + 2 * hidden)

    @classmethod
    def from_model(cls, model, name: str) -> "ModelShape":
        shape = cls.from_config(model.config, name)
        return dataclasses.replace(shape, params=compute_params(model))


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


@dataclass
class FlopsConfig:
    ledgers: list[str] = field([], help="ledger files (flops.json, <output>.flops.json); each counts toward the "
                                        "method named in its own 'method' field")
    method: list[str] = field([], help="NAME=LEDGER[,LEDGER...] assignments, all after one --method (a second "
                                       "--method replaces the first): e.g. --method implicit_ce=data.flops.json,"
                                       "run/flops.json math_shepherd=ms.flops.json; overrides a ledger's own "
                                       "'method'")
    baseline: Optional[str] = field(None, help="the method every ratio is relative to (default: the first method)")
    output: Optional[str] = field(None, help="write the table as JSON to this file and as Markdown beside it "
                                             "(F.json -> F.md)")
    paper: bool = field(False, help="instead of ledgers, recompute the paper's FLOPs comparison (Yuan et al. 2024) "
                                    "analytically, with its assumptions and a sensitivity table")


def assign_methods(ledgers: list[str], method: list[str]) -> dict[str, list[Path]]:
    """{method: [ledger paths]} in order of first mention: --method assignments first, then --ledgers by their
    own 'method' field. A ledger given twice or without a method is a ConfigError."""
    out: dict[str, list[Path]] = {}
    seen: dict[Path, str] = {}

    def put(name: str, path: Path) -> None:
        key = path.resolve()
        if key in seen:
            raise ConfigError(f"ledger {path} is given twice (for {seen[key]!r} and {name!r}); count it once")
        seen[key] = name
        out.setdefault(name, []).append(path)

    for item in method:
        name, eq, paths = item.partition("=")
        if not eq or not name or not paths.strip(","):
            raise ConfigError(f"field 'method': expected NAME=LEDGER[,LEDGER...], got {item!r}")
        for p in paths.split(","):
            if p:
                put(name, Path(p))
    for p in map(Path, ledgers):
        if p.resolve() in seen:  # also assigned by --method, which overrides
            continue
        name = read_ledger(p).method
        if not name:
            raise InputError(p, None, "method", "this ledger names no method: assign it with --method NAME=" + str(p))
        put(name, p)
    return out


def method_table(assigned: dict[str, list[Path]], baseline: str | None = None) -> dict:
    """Per method: the FLOPs of each phase summed over its ledgers, the total and its ratio to the baseline's."""
    if not assigned:
        raise ConfigError("no ledgers: give --ledgers and/or --method NAME=LEDGER (or --paper)")
    baseline = baseline or next(iter(assigned))
    if baseline not in assigned:
        raise ConfigError(f"field 'baseline': {baseline!r} is not one of the methods {list(assigned)}")
    methods = {}
    for name, paths in assigned.items():
        phases = dict.fromkeys(PHASES, 0)
        for p in paths:
            for phase, f in read_ledger(p).by_phase().items():
                phases[phase] += f
        methods[name] = {"ledgers": [str(p) for p in paths], "flops": phases, "total": sum(phases.values())}
    base = methods[baseline]["total"]
    for m in methods.values():
        m["ratio"] = m["total"] / base if base else None
    return {"schema": TABLE_SCHEMA, "baseline": baseline, "phases": PHASES, "methods": methods, "notes": NOTES}


def markdown_table(table: dict) -> str:
    head = ["method", *table["phases"].values(), "total", f"x {table['baseline']}"]
    rows = [[name, *(f"{m['flops'][p]:.3g}" for p in table["phases"]), f"{m['total']:.3g}",
             "-" if m["ratio"] is None else f"{m['ratio']:.2f}"] for name, m in table["methods"].items()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "FLOPs by method and phase\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in table["notes"])


def flops(cfg: FlopsConfig) -> dict:
    """`implicit-prm flops`: the per-method table of the given ledgers, or (--paper) the paper's comparison."""
    from .results import write_result

    if cfg.paper:
        if cfg.ledgers or cfg.method:
            raise ConfigError("--paper recomputes the paper's setting: give it without --ledgers/--method")
        from .flops_paper import paper_comparison, paper_markdown

        result = paper_comparison()
        text = paper_markdown(result)
    else:
        result = method_table(assign_methods(cfg.ledgers, cfg.method), cfg.baseline)
        text = markdown_table(result)
    print(text)
    if cfg.output:
        out = Path(cfg.output)
        write_result(out, result, cfg)
        write_text(out.with_suffix(".md") if out.suffix == ".json" else out.with_name(out.name + ".md"), text + "\n")
    return result
