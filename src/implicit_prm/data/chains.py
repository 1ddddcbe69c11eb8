"""The built-in arithmetic chains: a start value and operations, the prompt templates, and parsing a prompt back."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

MAX_ABS_VALUE = 1000  # every true intermediate value satisfies |c| < MAX_ABS_VALUE


OPERAND_RANGE = {"+": (2, 20), "-": (2, 20), "*": (2, 9)}  # never * 0 or * 1


MAX_BALANCE_ATTEMPTS = 20  # solver re-samples before a balancing completion is forced


_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


_PHRASES = {
    "+": ["add {b}", "add {b} to it", "increase it by {b}"],
    "-": ["subtract {b}", "take away {b}", "decrease it by {b}"],
    "*": ["multiply by {b}", "multiply the result by {b}", "multiply it by {b}"],
}


_TEMPLATES = [
    "Start with {s}. {ops}. What is the final result?",
    "Begin with the number {s}. {ops}. What number do you end up with?",
    "Take the number {s}. {ops}. What is the result?",
]


@dataclass(frozen=True)
class ChainProblem:
    """A start number and a chain of (op, operand) pairs; `values` are the true results after each step."""

    start: int
    ops: tuple[tuple[str, int], ...]
    prompt: str

    @property
    def values(self) -> list[int]:
        out, v = [], self.start
        for op, b in self.ops:
            v = _APPLY[op](v, b)
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.values[-1]


def make_problem(rng: random.Random, min_steps: int = 3, max_steps: int = 5) -> ChainProblem:
    """Draw a chain of min_steps..max_steps operations whose true values all stay within |c| < 1000."""
    n = rng.randint(min_steps, max_steps)
    start = rng.randint(2, 20)
    ops: list[tuple[str, int]] = []
    v = start
    while len(ops) < n:
        op = rng.choice("+-*")
        b = rng.randint(*OPERAND_RANGE[op])
        c = _APPLY[op](v, b)
        if abs(c) >= MAX_ABS_VALUE:  # too big: draw this operation again (+ and - always fit)
            continue
        ops.append((op, b))
        v = c
    phrases = [rng.choice(_PHRASES[op]).format(b=b) for op, b in ops]
    text = ", then ".join(phrases)
    prompt = rng.choice(_TEMPLATES).format(s=start, ops=text[0].upper() + text[1:])
    return ChainProblem(start=start, ops=tuple(ops), prompt=prompt)


def _pattern(template: str, **groups: str) -> re.Pattern:
    """A regex that matches `template` with each {name} replaced by groups[name] (all else literal)."""
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, ...
    return re.compile("".join(re.escape(x) if i % 2 == 0 else groups[x] for i, x in enumerate(parts)))


_PROMPT_RES = [_pattern(t, s=r"(-?\d+)", ops=r"(.+)") for t in _TEMPLATES]


_PHRASE_RES = [(op, _pattern(ph, b=r"(\d+)")) for op, phrases in _PHRASES.items() for ph in phrases]


def parse_prompt(prompt: str) -> ChainProblem:
    """The ChainProblem a built-in prompt was made from (make_problem's templates and phrases inverted); ValueError
    when the text is not one of them."""
    for pattern in _PROMPT_RES:
        m = pattern.fullmatch(prompt)
        if m:
            break
    else:
        raise ValueError("not a built-in problem prompt (no template matches)")
    text = m[2][0].lower() + m[2][1:]
    ops = []
    for phrase in text.split(", then "):
        op = next(((op, int(mm[1])) for op, r in _PHRASE_RES if (mm := r.fullmatch(phrase))), None)
        if op is None:
            raise ValueError(f"not a built-in operation: {phrase!r}")
        ops.append(op)
    return ChainProblem(start=int(m[1]), ops=tuple(ops), prompt=prompt)
