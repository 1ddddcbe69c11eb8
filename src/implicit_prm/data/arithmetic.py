"""Built-in RL tasks: arithmetic questions in tiers of rising difficulty, with exact integer answers.

`load_problems("arith:TIER[+TIER...][:train|test]")` (default split train). Every tier enumerates its whole
question space; a question belongs to the held-out `test` split when the first byte of the SHA-1 of its text is
below 52 (about 20%: a fixed split that does not depend on a seed or on which tiers are asked for), else to
`train`. Problems come in a fixed shuffled order (seed 0), so the first n of a split are a random sample of it.

The embedded SmolLM2-135M-Instruct answers about 28% of `add1` at temperature 1 (pass@4 about 62%) and about 4%
of the built-in multi-step chains; the tiers between them give RL something to learn at each level:

    add1   What is a + b?          a, b in 0..9            100 questions
    sub1   What is a - b?          0 <= b <= a <= 9         55
    mul1   What is a * b?          a, b in 2..9             64
    add3   What is a + b + c?      a, b, c in 0..9        1000
    mix1   What is a + b * c?      a, b, c in 1..9         729 (order of operations)
    add2   What is a + b?          a, b in 10..99         8100
"""
from __future__ import annotations

import hashlib
import itertools
import random

from ..core.errors import UserError

PREFIX = "arith"
TIERS = {
    "add1": (lambda: itertools.product(range(10), repeat=2), "{0} + {1}", lambda a, b: a + b),
    "sub1": (lambda: ((a, b) for a in range(10) for b in range(a + 1)), "{0} - {1}", lambda a, b: a - b),
    "mul1": (lambda: itertools.product(range(2, 10), repeat=2), "{0} * {1}", lambda a, b: a * b),
    "add3": (lambda: itertools.product(range(10), repeat=3), "{0} + {1} + {2}", lambda a, b, c: a + b + c),
    "mix1": (lambda: itertools.product(range(1, 10), repeat=3), "{0} + {1} * {2}", lambda a, b, c: a + b * c),
    "add2": (lambda: itertools.product(range(10, 100), repeat=2), "{0} + {1}", lambda a, b: a + b),
}
SPLITS = ("train", "test")
TEST_BELOW = 52  # of 256: the held-out share, about 20%


def is_arithmetic(spec: str) -> bool:
    return spec == PREFIX or spec.startswith(PREFIX + ":")


def split_of(question: str) -> str:
    return "test" if hashlib.sha1(question.encode()).digest()[0] < TEST_BELOW else "train"


def tier_problems(tier: str, split: str) -> list[dict]:
    """Every question of one tier in one split, in enumeration order: {id, question, answer, tier}."""
    combos, form, value = TIERS[tier]
    out = []
    for args in combos():
        question = f"What is {form.format(*args)}?"
        if split_of(question) == split:
            out.append({"id": f"{tier}/{'_'.join(map(str, args))}", "question": question,
                        "answer": str(value(*args)), "tier": tier})
    return out


def arithmetic_problems(spec: str) -> list[dict]:
    """`arith:add1+add3:test` -> the test questions of both tiers, shuffled with seed 0 (benchmarks.load_problems
    makes them Problems)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] != PREFIX:
        raise UserError(f"'{spec}': expected {PREFIX}:TIER[+TIER...][:train|test], tiers {', '.join(TIERS)}")
    tiers, split = parts[1].split("+"), parts[2] if len(parts) == 3 else "train"
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or split not in SPLITS:
        what = f"tier {unknown[0]!r}" if unknown else f"split {split!r}"
        raise UserError(f"'{spec}': unknown {what}; tiers: {', '.join(TIERS)}; splits: {', '.join(SPLITS)}")
    problems = [p for t in dict.fromkeys(tiers) for p in tier_problems(t, split)]
    random.Random(0).shuffle(problems)
    return problems
