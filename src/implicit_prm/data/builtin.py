"""Built-in verifiable data: multi-step arithmetic chains solved by a simulated solver with known first errors.

A problem is a start number and 3-6 operations (+, -, * with small operands), e.g.
"Start with 7. Add 5, then multiply by 3, then subtract 4. What is the final result?". The default simulated
solver (version 2, `data.solver`) writes one blank-line-separated step per operation in varied wording and makes
systematic, problem-specific mistakes, recording each completion's `error_kind`. Version 1, kept for the results
committed with it (`version=1`), writes one "Step k: a op b = c" line per operation; with probability
`step_error_rate` a step's result is wrong, and later steps carry the wrong value forward. Because +b, -b and
*b (b >= 2) are injective, a completion's final answer is wrong exactly when some step is wrong, so every record
comes with exact step truth (`first_error`) as well as the outcome label the implicit PRM trains on.

Records use the rollout schema (format 1): {"prompt", "completions", "correctness", "first_error", "answer"}.
Both versions draw the same problems from the same seed and write the same record layout; version 2 adds
`error_kind`, and `solver` / `solver_states` for continuing a prefix (`implicit-prm label-mc`; `parse_prompt`
reads the problem back from its prompt).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..core.config import field
from ..core.errors import ConfigError
from .chains import _APPLY, MAX_BALANCE_ATTEMPTS, ChainProblem, make_problem
from .solver import generate_rollouts_v2


@dataclass
class BuiltinDataConfig:
    output: str = field(help="JSONL file to write the rollouts to (format 1: prompt, completions, correctness)")
    n_problems: int = field(500, help="number of problems (one record each)")
    samples_per_problem: int = field(2, help="simulated solver completions per problem")
    min_steps: int = field(3, help="fewest operations in a problem")
    max_steps: int = field(5, help="most operations in a problem (at most 6)")
    step_error_rate: float = field(0.15, help="probability that the solver gets any one step wrong (0 = all correct)")
    balance: bool = field(True, help="give every problem at least one correct and one incorrect completion "
                                     "(needs samples_per_problem >= 2 and step_error_rate > 0)")
    seed: int = field(0, help="random seed; the same seed gives the same file")
    ledger: bool = field(True, help="write <output>.flops.json: the responses counted as the embedded model "
                                    "generating them (measured with its tokenizer)")
    # compatibility: version 1 (one equation per step, random slips) keeps the committed version-1 results
    # reproducible; warn on use in 0.2, remove in 0.3 with the version-1 generator below
    version: int = field(2, help="generator version: 2 = varied phrasing and systematic problem-specific mistakes "
                                 "(data.solver); 1 = one equation per step, independent random slips (the "
                                 "results committed before 2026-11-29)")

    def __post_init__(self):
        def bad(name, expected):
            raise ConfigError(f"field '{name}' must be {expected}, got {getattr(self, name)!r}")
        if self.n_problems < 1:
            bad("n_problems", "at least 1")
        if self.samples_per_problem < 1:
            bad("samples_per_problem", "at least 1")
        if not 1 <= self.min_steps <= 6:
            bad("min_steps", "between 1 and 6")
        if not self.min_steps <= self.max_steps <= 6:
            bad("max_steps", f"between min_steps ({self.min_steps}) and 6")
        if not 0.0 <= self.step_error_rate <= 1.0:
            bad("step_error_rate", "between 0 and 1")
        if self.version not in (1, 2):
            bad("version", "1 or 2")


# compatibility: the version-1 generator (_corrupt, solve, _balance_outcomes_v1 and generate_rollouts' version-1
# branch), kept for the results committed with it (experiments/results/README.md, experiments/surface_leak.py);
# warn on --version 1 in 0.2, remove in 0.3 (version 2 lives in data/solver.py)
def _corrupt(c: int, rng: random.Random, avoid: set[int]) -> int:
    """A wrong result near c: c + delta (delta in +-1..10), or sometimes one digit changed; never a value in avoid."""
    while True:
        digits = str(abs(c))
        if len(digits) >= 2 and rng.random() < 0.2:  # digit slip
            i = rng.randrange(len(digits))
            choices = [d for d in "0123456789" if d != digits[i] and not (i == 0 and d == "0")]
            wrong = int(digits[:i] + rng.choice(choices) + digits[i + 1:]) * (-1 if c < 0 else 1)
        else:
            wrong = c + rng.choice([-1, 1]) * rng.randint(1, 10)
        if wrong not in avoid:
            return wrong


def solve(problem: ChainProblem, error_rate: float, rng: random.Random,
          force_error_at: int | None = None) -> tuple[list[str], int]:
    """Simulate a solver: one "Step k: a op b = c" per operation; returns (steps, first_error), -1 if none.

    Each step is wrong with probability error_rate (or exactly at step `force_error_at`, when given, and nowhere
    else). A wrong result differs both from a op b and from the true value at that step, so once the carried
    value is wrong it stays wrong and the final answer is wrong iff some step was. The last step ends with
    " The answer is N." where N is the solver's final value.
    """
    truth = problem.values
    steps: list[str] = []
    first_error, a = -1, problem.start
    for i, (op, b) in enumerate(problem.ops):
        right = _APPLY[op](a, b)
        wrong = (i == force_error_at) if force_error_at is not None else rng.random() < error_rate
        c = _corrupt(right, rng, avoid={right, truth[i]}) if wrong else right
        if wrong and first_error < 0:
            first_error = i
        steps.append(f"Step {i + 1}: {a} {op} {b} = {c}")
        a = c
    steps[-1] += f". The answer is {a}."
    return steps, first_error


def _balance_outcomes_v1(problem: ChainProblem, samples: list[tuple[list[str], int]], error_rate: float,
                         rng: random.Random) -> None:
    """Make sure samples hold a correct and an incorrect completion: re-sample the solver, then force one."""
    for want_correct in (True, False):
        if any((fe < 0) == want_correct for _, fe in samples):
            continue
        # replace a sample of the over-represented kind, keeping at least one of it
        slot = rng.randrange(len(samples))
        for _ in range(MAX_BALANCE_ATTEMPTS):
            cand = solve(problem, error_rate, rng)
            if (cand[1] < 0) == want_correct:
                break
        else:
            cand = (solve(problem, 0.0, rng) if want_correct
                    else solve(problem, error_rate, rng, force_error_at=rng.randrange(len(problem.ops))))
        samples[slot] = cand


def generate_rollouts(cfg: BuiltinDataConfig) -> list[dict]:
    """All records for cfg, deterministic given cfg.seed (version 1 uses only random.Random(cfg.seed))."""
    if cfg.version == 2:
        return generate_rollouts_v2(cfg)
    # compatibility: version 1 from here on (see the note above _corrupt)
    rng = random.Random(cfg.seed)
    records = []
    for _ in range(cfg.n_problems):
        problem = make_problem(rng, cfg.min_steps, cfg.max_steps)
        samples = [solve(problem, cfg.step_error_rate, rng) for _ in range(cfg.samples_per_problem)]
        if cfg.balance and cfg.samples_per_problem >= 2 and cfg.step_error_rate > 0:
            _balance_outcomes_v1(problem, samples, cfg.step_error_rate, rng)
        records.append({
            "prompt": problem.prompt,
            "completions": ["\n\n".join(steps) for steps, _ in samples],
            "correctness": [fe < 0 for _, fe in samples],
            "first_error": [fe for _, fe in samples],
            "answer": problem.answer,
        })
    return records


