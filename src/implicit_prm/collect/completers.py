"""Completers for Monte-Carlo step labels: K full responses sampled from the first k steps of a response.

One interface, `complete(prefixes, k) -> texts`: for each Prefix, k FULL response texts (the prefix as written,
then a sampled continuation), which `label-mc` grades against the reference answer. Completion j of a prefix is
seeded from (prefix.seed, j), so a rerun draws the same completions (the HF completer: on the same hardware).

  builtin  the version-2 simulated solver of the built-in data (data.solver.continue_solution), continuing from
           the solver state the record stores (`solver`, `solver_states`) with the same error model that wrote the
           response. From a wrong prefix it never reaches the right answer (the solver re-draws any completion whose
           final answer is right after a mistake), so labels are close to exact truth.
  hf       any causal LM: chat template of the record's prompt, then the prefix as the start of the assistant turn,
           then sampled tokens, batched over prefixes (rollout.generate).
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Protocol

from ..core.errors import InputError
from ..core.validation import describe_json
from ..data.chains import parse_prompt
from ..data.solver import State, continue_solution, make_profile
from ..models.chat import chat_text
from ..models.generation import generate
from ..models.loading import load_model, load_tokenizer
from ..models.settings import DeviceSettings


@dataclass
class Prefix:
    """The first len(steps) steps of one response, to be completed."""

    prompt: str  # the record's prompt (the user message)
    text: str  # the response up to the end of its last prefix step, separator included, as written
    steps: list[str]  # the prefix's step texts, trailing whitespace removed
    n_steps: int  # steps in the whole response
    record: dict  # the sample's record (per-completion fields sliced): what the builtin completer reads
    seed: str  # per (config seed, record, completion, prefix length); completion j draws from f"{seed}:{j}"
    source: tuple[str, int]  # (path, line) for error messages


class Completer(Protocol):
    def check(self, prefix: Prefix) -> None:
        """Raise InputError when this completer cannot continue the prefix (called for every prefix first)."""

    def complete(self, prefixes: list[Prefix], k: int) -> list[list[str]]:
        """k full response texts (prefix included) for each prefix."""


class BuiltinCompleter:
    """Continues built-in (`implicit-prm data`, version 2) responses with the simulated solver."""

    def check(self, prefix: Prefix) -> None:
        self._context(prefix)

    def _context(self, p: Prefix):
        """(problem, profile, state after the prefix) from the record, or InputError naming the field."""
        path, line = p.source
        rec, k = p.record, len(p.steps)
        solver = rec.get("solver")
        if not isinstance(solver, dict) or solver.get("version") != 2:
            raise InputError(path, line, "solver", f"expected {{'version': 2, 'seed', 'rate_scale'}} as `implicit-prm "
                                                   f"data` writes; found {describe_json(solver)} (the builtin completer "
                                                   "continues built-in data only)")
        try:
            problem = parse_prompt(rec["prompt"])
        except ValueError as e:
            raise InputError(path, line, "prompt", f"{e}; the builtin completer needs a built-in problem") from None
        states = rec.get("solver_states")
        if not isinstance(states, list) or len(states) != p.n_steps or not all(
                isinstance(s, list) and len(s) == 2 and all(type(x) is int for x in s) for s in states):
            raise InputError(path, line, "solver_states", f"expected one [value, next operation] per step "
                                                          f"({p.n_steps} steps), found {describe_json(states)}")
        truth = problem.values
        wrong = [i for i in range(k) if i >= len(truth) or states[i][0] != truth[i]]  # the solver's own definition
        first = wrong[0] if wrong else -1
        value, next_op = states[k - 1]
        if not 0 <= next_op < len(problem.ops):
            raise InputError(path, line, f"solver_states[{k - 1}]", f"operation index {next_op} out of range for "
                                                                    f"{len(problem.ops)} operations")
        kind = rec.get("error_kind") if first >= 0 else None
        state = State(value=value, next_op=next_op, pos=k, first_error=first, error_kind=kind)
        return problem, make_profile(problem, solver["seed"], solver["rate_scale"]), state

    def complete(self, prefixes: list[Prefix], k: int) -> list[list[str]]:
        out = []
        for p in prefixes:
            problem, profile, state = self._context(p)
            texts = []
            for j in range(k):
                comp = continue_solution(problem, profile, p.steps, random.Random(f"mc:{p.seed}:{j}"),
                                         f"mc:{p.seed}:{j}", state=state)
                texts.append("\n\n".join(comp.steps))
            out.append(texts)
        return out


class HFCompleter:
    """Samples continuations from a causal LM, `batch_size` prefixes (x k samples) per generate call."""

    def __init__(self, model: str, temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 256,
                 system_prompt: str | None = None, precision: str = "fp32", batch_size: int = 8,
                 device: str = "auto", attn_implementation: str | None = None):
        import torch


        self.tok = load_tokenizer(model)
        self.tok.padding_side = "left"  # batched generation continues from the right edge
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        where = DeviceSettings(device=device).torch_device()
        self.model = load_model(model, dtype, attn_implementation=attn_implementation, device=where).to(where).eval()
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.system_prompt, self.batch_size = system_prompt, batch_size

    def check(self, prefix: Prefix) -> None:
        pass

    def complete(self, prefixes: list[Prefix], k: int) -> list[list[str]]:

        out = []
        for b in range(0, len(prefixes), self.batch_size):
            batch = prefixes[b:b + self.batch_size]
            texts = [chat_text(self.tok, p.prompt, self.system_prompt) + p.text for p in batch]
            seed = zlib.crc32(batch[0].seed.encode())  # the batch's first prefix: the same on a resumed run
            gen, _ = generate(self.model, self.tok, texts, k, self.temperature, self.top_p, self.max_new_tokens, seed)
            out += [[p.text + c.rstrip() for c in gen[i * k:(i + 1) * k]] for i, p in enumerate(batch)]
        return out
