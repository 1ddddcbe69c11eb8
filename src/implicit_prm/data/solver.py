"""Version-2 simulated solver for the built-in arithmetic chains: diverse correct texts, systematic mistakes.

Mistakes are problem-specific: each problem gets a `Profile` (seeded by the problem) with an overall difficulty
and a "temptation" multiplier per (operation, error kind); a few (operation, kind) pairs are traps with large
multipliers, so samples of one problem keep making the same mistake and share wrong answers. The kinds:

  misread_op     the step's operation read as another one (a fixed misreading per step of a problem)
  reversed_sub   a - b computed as b - a
  carry_slip     digit-wise addition / subtraction / multiplication that forgets a carry or borrow
  arithmetic_slip a nearby wrong result (often the same one for a step of a problem)
  dropped_step   operation i skipped: the step applies operation i + 1
  repeated_step  the previous operation applied again instead of operation i

A step's intrinsic difficulty depends on what it computes (carries, borrows, multi-digit products, negative
differences) and on the chain length. Truth is exact: written step p is wrong iff its stated value differs from
the true value after p + 1 operations; a mistake that would give the true value is drawn again, and a completion
whose final answer is right after a mistake is drawn again, so `first_error` >= 0 iff the final answer is wrong.
Surface text (see solver_text) comes from a separate seed and never depends on correctness.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from . import solver_text
from .chains import _APPLY, MAX_BALANCE_ATTEMPTS, ChainProblem, make_problem

KINDS = ("misread_op", "reversed_sub", "carry_slip", "arithmetic_slip", "dropped_step", "repeated_step")
MISREAD = {"+": "*", "-": "+", "*": "+"}
MAX_TRIES = 100
RATE_UNIT = 0.15  # step_error_rate that gives rate_scale 1 (the default rate)


@dataclass(frozen=True)
class Profile:
    """Per-problem error model: difficulty, temptation[i][kind] and a preferred slip offset per operation."""

    difficulty: float
    temptation: tuple[dict[str, float], ...]
    slip: tuple[int, ...]


@dataclass(frozen=True)
class State:
    """The solver after some written steps: running value, next operation, steps written, first error so far."""

    value: int
    next_op: int = 0
    pos: int = 0
    first_error: int = -1
    error_kind: str | None = None


@dataclass
class Completion:
    """A written solution: its step blocks (final answer in the last), truth, and the state after each step."""

    steps: list[str]
    first_error: int
    error_kind: str | None
    states: list[State]
    answer: int


def _digits(x: int) -> list[int]:
    """Decimal digits of x >= 0, least significant first."""
    return [int(d) for d in reversed(str(x))]


def no_carry(a: int, op: str, b: int) -> int | None:
    """The result of a op b computed digit by digit while forgetting every carry / borrow; None if not applicable."""
    if a < 0 or b < 0 or (op == "-" and a < b) or (op == "*" and (a < 10 or b >= 10)):
        return None
    da, db = _digits(a), _digits(b)
    da, db = da + [0] * (len(db) - len(da)), db + [0] * (len(da) - len(db))
    if op == "+":
        out = [(x + y) % 10 for x, y in zip(da, db)]
    elif op == "-":
        out = [abs(x - y) for x, y in zip(da, db)]
    else:
        out = [(x * b) % 10 for x in da[:-1]] + [da[-1] * b]
        return sum(d * 10 ** i for i, d in enumerate(out[:-1])) + out[-1] * 10 ** (len(out) - 1)
    return sum(d * 10 ** i for i, d in enumerate(out))


def base_weights(a: int, op: str, b: int, i: int, n: int) -> dict[str, float]:
    """Intrinsic hazard of each error kind applicable to step a op b (operation i of n); absent = impossible."""
    right = _APPLY[op](a, b)
    w = {"misread_op": 0.012, "arithmetic_slip": 0.008 + 0.006 * (len(str(abs(right))) - 1)}
    if op == "*" and abs(a) >= 10:
        w["arithmetic_slip"] += 0.03
    slip = no_carry(a, op, b)
    if slip is not None and slip != right:
        w["carry_slip"] = {"+": 0.035, "-": 0.06, "*": 0.07}[op]
    if op == "-" and a != b:
        w["reversed_sub"] = 0.1 if a < b else 0.008
    if i < n - 1:
        w["dropped_step"] = 0.008
    if i >= 1:
        w["repeated_step"] = 0.006
    return w


def make_profile(problem: ChainProblem, seed: int = 0, rate_scale: float = 1.0) -> Profile:
    """Draw the problem's error model from an RNG seeded by the problem (and the data seed) alone."""
    rng = random.Random(f"profile:{seed}:{problem.start}:{problem.ops}")
    n = len(problem.ops)
    difficulty = rate_scale * math.exp(rng.gauss(0.0, 0.8)) * (1 + 0.2 * (n - 3))
    temptation = [{k: math.exp(rng.gauss(0.0, 0.6)) for k in KINDS} for _ in range(n)]
    values = [problem.start] + problem.values
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):  # traps: tempting mistakes this problem invites
        i = rng.randrange(n)
        op, b = problem.ops[i]
        kinds = sorted(base_weights(values[i], op, b, i, n))
        temptation[i][rng.choice(kinds)] *= rng.uniform(5.0, 30.0)
    slip = tuple(rng.choice([-10, -2, -1, 1, 2, 10]) for _ in range(n))
    return Profile(difficulty=difficulty, temptation=tuple(temptation), slip=slip)


def _mistake(kind: str, problem: ChainProblem, profile: Profile, state: State, rng: random.Random):
    """(written op, written operand, stated value, next operation index) for making `kind` at this state."""
    i, a = state.next_op, state.value
    op, b = problem.ops[i]
    if kind == "misread_op":
        return MISREAD[op], b, _APPLY[MISREAD[op]](a, b), i + 1
    if kind == "reversed_sub":
        return op, b, b - a, i + 1
    if kind == "carry_slip":
        return op, b, no_carry(a, op, b), i + 1
    if kind == "arithmetic_slip":
        delta = profile.slip[i] if rng.random() < 0.6 else rng.choice([-1, 1]) * rng.randint(1, 10)
        return op, b, _APPLY[op](a, b) + delta, i + 1
    if kind == "dropped_step":
        op2, b2 = problem.ops[i + 1]
        return op2, b2, _APPLY[op2](a, b2), i + 2
    if kind == "repeated_step":
        op0, b0 = problem.ops[i - 1]
        return op0, b0, _APPLY[op0](a, b0), i
    raise ValueError(f"unknown error kind {kind!r}")


def _draw_kind(problem: ChainProblem, profile: Profile, state: State, rng: random.Random) -> str | None:
    """Whether the solver errs at this step and how: an error kind, or None for a correct step."""
    i, n = state.next_op, len(problem.ops)
    op, b = problem.ops[i]
    w = base_weights(state.value, op, b, i, n)
    if state.pos > n:  # at most two extra steps from repeats
        w.pop("repeated_step", None)
    w = {k: v * profile.temptation[i][k] * profile.difficulty for k, v in w.items()}
    if rng.random() >= 1.0 - math.exp(-sum(w.values())):
        return None
    kinds = sorted(w)
    return rng.choices(kinds, weights=[w[k] for k in kinds])[0]


def step(problem: ChainProblem, profile: Profile, state: State, rng: random.Random,
         force: str | None = None) -> tuple[tuple[str, int, int], State]:
    """One written step from `state`: ((op, b, stated value), new state). `force` = an error kind or "correct"."""
    i, a, truth = state.next_op, state.value, problem.values
    op, b = problem.ops[i]
    right = _APPLY[op](a, b)
    true_here = truth[state.pos] if state.pos < len(truth) else None
    for _ in range(MAX_TRIES):
        kind = _draw_kind(problem, profile, state, rng) if force is None else force
        if kind in (None, "correct"):
            return (op, b, right), replace(state, value=right, next_op=i + 1, pos=state.pos + 1)
        if kind not in base_weights(a, op, b, i, len(problem.ops)):
            raise ValueError(f"error kind {kind!r} is impossible at operation {i}")
        w_op, w_b, c, nxt = _mistake(kind, problem, profile, state, rng)
        if c != true_here and (c != right or nxt != i + 1):
            new = replace(state, value=c, next_op=nxt, pos=state.pos + 1)
            if state.first_error < 0:
                new = replace(new, first_error=state.pos, error_kind=kind)
            return (w_op, w_b, c), new
    raise RuntimeError(f"could not draw a wrong step at operation {i}")


def initial_state(problem: ChainProblem, n_steps: int = 0) -> State:
    """The state after n_steps correct steps of problem (for continuing a correct prefix)."""
    value = problem.start if n_steps == 0 else problem.values[n_steps - 1]
    return State(value=value, next_op=n_steps, pos=n_steps)


def continue_solution(problem: ChainProblem, profile: Profile, prefix: list[str], rng: random.Random,
                      surface_seed: str, state: State | None = None,
                      force: dict[int, str] | None = None) -> Completion:
    """Continue the written steps `prefix` (state = what they imply; default: a correct prefix) to the end.

    Uses the same error model as a fresh sample; `force` maps written step positions to an error kind or "correct"
    (a test hook). The prefix's steps are kept as they are; a completion whose final answer is right after a
    mistake is re-drawn, so its first_error is exact.
    """
    start = state if state is not None else initial_state(problem, len(prefix))
    if start.pos != len(prefix):
        raise ValueError(f"the state is after {start.pos} written steps but the prefix has {len(prefix)}")
    numbered = prefix[0].startswith("Step 1:") if prefix else None
    style = solver_text.draw_style(surface_seed, numbered)
    for _ in range(MAX_TRIES):
        steps, states, s = list(prefix), [], start
        while s.next_op < len(problem.ops):
            (op, b, c), new = step(problem, profile, s, rng, (force or {}).get(s.pos))
            steps.append(solver_text.write_step(style, surface_seed, s.pos, s.value, op, b, c))
            states.append(new)
            s = new
        if (s.first_error < 0) == (s.value == problem.answer):
            if steps:
                steps[-1] += " " + solver_text.write_final(style, s.value)
            return Completion(steps, s.first_error, s.error_kind, states, s.value)
    raise RuntimeError("could not draw a consistent completion")


def solve_v2(problem: ChainProblem, profile: Profile, rng: random.Random, surface_seed: str,
             force: dict[int, str] | None = None) -> Completion:
    """A fresh sample of the version-2 solver for problem (errors from rng, text from surface_seed)."""
    return continue_solution(problem, profile, [], rng, surface_seed, force=force)


def _forced_error(problem: ChainProblem, profile: Profile) -> dict[int, str]:
    """A `force` map that makes the problem's most tempting mistake (on a correct prefix)."""
    values, n = [problem.start] + problem.values, len(problem.ops)
    best = max(((w * profile.temptation[i][k], i, k)
                for i, (op, b) in enumerate(problem.ops)
                for k, w in base_weights(values[i], op, b, i, n).items()))
    return {best[1]: best[2]}


def _balance_outcomes_v2(problem: ChainProblem, profile: Profile, samples: list[Completion], tag: str,
                         tries: int) -> None:
    """Make samples hold a correct and an incorrect completion: re-sample the solver, then force one."""
    for want_correct in (True, False):
        if any((c.first_error < 0) == want_correct for c in samples):
            continue
        slot = random.Random(f"slot:{tag}").randrange(len(samples))
        for t in range(tries):
            cand = solve_v2(problem, profile, random.Random(f"balance:{tag}:{t}"), f"{tag}:{slot}")
            if (cand.first_error < 0) == want_correct:
                break
        else:
            force = ({p: "correct" for p in range(len(problem.ops))} if want_correct
                     else _forced_error(problem, profile))
            cand = solve_v2(problem, profile, random.Random(f"balance:{tag}"), f"{tag}:{slot}", force=force)
        samples[slot] = cand


def generate_rollouts_v2(cfg) -> list[dict]:
    """All version-2 records for a BuiltinDataConfig, deterministic given cfg.seed.

    Problems come from the same generator as version 1; each record adds a per-completion `error_kind`, and what
    continuing a written prefix needs (`data.completers`, for Monte-Carlo step labels): `solver` = {"version": 2,
    "seed", "rate_scale"} (the Profile is make_profile(parse_prompt(prompt), seed, rate_scale)) and per completion
    `solver_states` = [stated value, next operation index] after each written step. Like `first_error`, these are
    ground truth of the simulation: training and scoring never read them.
    """
    rng = random.Random(cfg.seed)
    rate_scale = cfg.step_error_rate / RATE_UNIT
    records = []
    for idx in range(cfg.n_problems):
        problem = make_problem(rng, cfg.min_steps, cfg.max_steps)
        profile = make_profile(problem, cfg.seed, rate_scale)
        tag = f"{cfg.seed}:{idx}"
        samples = [solve_v2(problem, profile, random.Random(f"errors:{tag}:{j}"), f"{tag}:{j}")
                   for j in range(cfg.samples_per_problem)]
        if cfg.balance and cfg.samples_per_problem >= 2 and cfg.step_error_rate > 0:
            _balance_outcomes_v2(problem, profile, samples, tag, MAX_BALANCE_ATTEMPTS)
        records.append({
            "prompt": problem.prompt,
            "completions": ["\n\n".join(c.steps) for c in samples],
            "correctness": [c.first_error < 0 for c in samples],
            "first_error": [c.first_error for c in samples],
            "error_kind": [c.error_kind for c in samples],
            "solver_states": [[[st.value, st.next_op] for st in c.states] for c in samples],
            "answer": problem.answer,
            "solver": {"version": 2, "seed": cfg.seed, "rate_scale": rate_scale},
        })
    return records
