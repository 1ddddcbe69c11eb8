"""Surface forms for the version-2 simulated solver: how one step, and the final answer, are written.

Every choice here is drawn from a surface RNG that never sees whether a step is right, so phrasing, length and
checks carry no information about correctness. A solution-wide `Style` (numbered steps or not, equations or words,
how often to restate the running value or add a check, the final-answer sentence) is drawn once per sample; each
step then draws its own form from a per-step RNG, so continuing a prefix needs only the surface seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

_SYMBOL = {"+": "+", "-": "-", "*": "*"}
_WORDS = {
    "+": ["Adding {b} to {a} gives {c}.", "{a} plus {b} is {c}.", "If we add {b} to {a}, we get {c}.",
          "Increasing {a} by {b} makes {c}."],
    "-": ["Subtracting {b} from {a} leaves {c}.", "{a} minus {b} is {c}.", "Taking {b} away from {a} gives {c}.",
          "Decreasing {a} by {b} makes {c}."],
    "*": ["Multiplying {a} by {b} gives {c}.", "{a} times {b} is {c}.", "{b} groups of {a} make {c}.",
          "Multiplying by {b} turns {a} into {c}."],
}
_EQUATIONS = ["{a} {s} {b} = {c}.", "We compute {a} {s} {b} = {c}.", "{a} {s} {b} = {c}, so the value is {c}."]
_FIRST = ["First, ", "To begin, ", "We start from {a}. "]
_NEXT = ["Next, ", "Then ", "Now ", "After that, "]
_RESTATE = ["Now we have {c}.", "The running total is {c}.", "So we are at {c}.", "That leaves us with {c}."]
_INVERSE = {"+": "-", "-": "+", "*": "/"}
_CHECKS = ["Check: {c} {i} {b} = {a}.", "(Quick check: {c} {i} {b} = {a}.)", "Let me verify: {c} {i} {b} gives {a}."]
FINALS = ["The answer is {x}.", "So the final answer is {x}.", "Therefore, {x}.", "\\boxed{{{x}}}",
          "Final answer: {x}.", "The final result is {x}.", "So the answer is \\boxed{{{x}}}."]


@dataclass(frozen=True)
class Style:
    """Solution-wide surface preferences, drawn once per sample from the surface seed."""

    numbered: bool
    p_words: float  # chance a step is written in words rather than as an equation
    p_connective: float
    p_restate: float
    p_check: float
    times: str  # how "*" is written in equations
    final: str


def draw_style(surface_seed: str, numbered: bool | None = None) -> Style:
    """The style of the sample with this surface seed; `numbered` overrides (to match an existing prefix)."""
    rng = random.Random(f"style:{surface_seed}")
    style = Style(numbered=rng.random() < 0.4, p_words=rng.choice([0.0, 0.3, 0.6, 1.0]),
                  p_connective=rng.choice([0.0, 0.4, 0.8]), p_restate=rng.choice([0.0, 0.3, 0.7]),
                  p_check=rng.choice([0.0, 0.0, 0.15, 0.4]), times=rng.choice(["*", "*", "×"]),
                  final=rng.choice(FINALS))
    if numbered is not None and numbered != style.numbered:
        style = Style(numbered, style.p_words, style.p_connective, style.p_restate, style.p_check, style.times,
                      style.final)
    return style


def write_step(style: Style, surface_seed: str, pos: int, a: int, op: str, b: int, c: int) -> str:
    """The text of written step `pos` (0-based) that states a op b = c, in this sample's style."""
    rng = random.Random(f"step:{surface_seed}:{pos}")
    words, connective = rng.random() < style.p_words, rng.random() < style.p_connective
    restate, check = rng.random() < style.p_restate, rng.random() < style.p_check
    symbol = style.times if op == "*" else _SYMBOL[op]
    if words:
        main = rng.choice(_WORDS[op]).format(a=a, b=b, c=c)
    else:
        main = rng.choice(_EQUATIONS).format(a=a, s=symbol, b=b, c=c)
    parts = []
    if connective:
        lead = rng.choice(_FIRST if pos == 0 else _NEXT).format(a=a)
        main = lead + (main if lead.endswith(". ") else main[0].lower() + main[1:])
    parts.append(main)
    if restate:
        parts.append(rng.choice(_RESTATE).format(c=c))
    if check:
        parts.append(rng.choice(_CHECKS).format(c=c, i=_INVERSE[op], b=b, a=a))
    text = " ".join(parts)
    return f"Step {pos + 1}: {text}" if style.numbered else text


def write_final(style: Style, answer: int) -> str:
    """The final-answer sentence appended to the last step."""
    return style.final.format(x=answer)
