"""Statistics of rollout-format records (`completions`, `correctness`, optional `first_error` / `error_kind`).

`rollout_stats(records)` is a pure function of the records (any rollout file: `implicit-prm data` output, later
`implicit-prm rollout` output). Per problem (one record) with N completions:
  pass@1           mean over problems of the fraction of completions that are correct
  pass@N           share of problems with at least one correct completion
  majority@N       share of problems whose most common answer is correct: each completion votes with
                   records.vote_key(grading.extract_answer(completion)) (no answer: no vote); ties go to the answer
                   seen first (as `eval bon` does); the winner is correct when the first completion giving it is
  answered         share of completions with an extracted answer
  distinct_correct the number of distinct correct texts after normalise_text (case, whitespace and Unicode
                   punctuation): the mean over problems with >= 1 correct, and the share of problems with >= 3
                   distinct among those with >= 3 correct
  wrong_repeat     among problems with >= 2 wrong completions, the share whose most common wrong answer (by vote
                   key) is given >= 2 times
  error_kinds      counts of the non-null `error_kind` of the completions (the kind of their first error), when
                   the records carry it; first_error_steps: counts of the 0-based `first_error` of wrong ones
A share with an empty denominator is None. `balanced` is recorded as given: a balanced file (a correct and a wrong
completion in every problem, by construction) makes pass@N and majority@N meaningless.
"""
from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path

from ..core.errors import InputError
from ..core.io import write_json, write_jsonl
from ..core.results import text_table, write_result
from ..core.validation import describe_json
from .grading import extract_answer, vote_key

SCHEMA = "implicit-prm/data-stats/v1"


def stats_path(output: str | os.PathLike) -> Path:
    """Where the stats of a rollout file go: <output>.stats.json beside it."""
    output = Path(output)
    return output.with_name(output.name + ".stats.json")


def normalise_text(text: str) -> str:
    """Case-folded, Unicode punctuation (categories P*) replaced by spaces, runs of whitespace collapsed."""
    chars = (" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
    return " ".join("".join(chars).split())


def answer_vote(text: str) -> str | None:
    """The key under which a completion votes: vote_key of its extracted answer; None when it has no answer."""
    answer = extract_answer(text)
    return vote_key(answer.strip()) if answer is not None and answer.strip() else None


def _check(rec, i: int, path) -> tuple[list[str], list[bool]]:
    completions, correctness = rec.get("completions"), rec.get("correctness")
    if not isinstance(completions, list) or not completions or not all(isinstance(c, str) for c in completions):
        raise InputError(path, i, "completions", f"expected a non-empty list of strings, found "
                                                 f"{describe_json(completions)}")
    if not isinstance(correctness, list) or len(correctness) != len(completions):
        raise InputError(path, i, "correctness", f"expected a list of {len(completions)} labels (one per "
                                                 f"completion), found {describe_json(correctness)}")
    for key in ("first_error", "error_kind"):
        if key in rec and (not isinstance(rec[key], list) or len(rec[key]) != len(completions)):
            raise InputError(path, i, key, f"expected a list of {len(completions)} values, found "
                                           f"{describe_json(rec[key])}")
    return completions, [bool(c) for c in correctness]


def problem_stats(completions: list[str], correct: list[bool]) -> dict:
    """One problem's counts: n, n_correct, answered, majority (correct?), distinct correct texts, wrong repeats."""
    votes = [answer_vote(c) for c in completions]
    tally = Counter(v for v in votes if v is not None)  # insertion order = first seen; most_common keeps it on ties
    majority = False
    if tally:
        winner = tally.most_common(1)[0][0]
        majority = correct[votes.index(winner)]
    wrong = Counter(v for v, ok in zip(votes, correct) if not ok and v is not None)
    return {"n": len(completions), "n_correct": sum(correct), "answered": sum(v is not None for v in votes),
            "majority": majority,
            "distinct_correct": len({normalise_text(c) for c, ok in zip(completions, correct) if ok}),
            "n_wrong": len(correct) - sum(correct),
            "top_wrong": wrong.most_common(1)[0][1] if wrong else 0}


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def rollout_stats(records, balanced: bool = False, path="records") -> dict:
    """The statistics of the module docstring for rollout records (InputError, naming record i, for a bad one)."""
    per, kinds, steps, has_kinds, has_steps = [], Counter(), Counter(), False, False
    for i, rec in enumerate(records, start=1):
        completions, correct = _check(rec, i, path)
        per.append(problem_stats(completions, correct))
        if "error_kind" in rec:
            has_kinds = True
            kinds.update(k for k in rec["error_kind"] if k is not None)
        if "first_error" in rec:
            has_steps = True
            steps.update(int(fe) for fe in rec["first_error"] if fe is not None and int(fe) >= 0)
    if not per:
        raise InputError(path, None, None, "no records")
    ns = sorted({p["n"] for p in per})
    with_correct = [p for p in per if p["n_correct"] >= 1]
    many_correct = [p for p in per if p["n_correct"] >= 3]
    many_wrong = [p for p in per if p["n_wrong"] >= 2]
    return {
        "schema": SCHEMA, "n_problems": len(per), "n_completions": sum(p["n"] for p in per),
        "samples_per_problem": ns[0] if len(ns) == 1 else [ns[0], ns[-1]], "balanced": bool(balanced),
        "pass@1": sum(p["n_correct"] / p["n"] for p in per) / len(per),
        "pass@N": _share([p["n_correct"] > 0 for p in per]),
        "majority@N": _share([p["majority"] for p in per]),
        "answered": sum(p["answered"] for p in per) / sum(p["n"] for p in per),
        "distinct_correct": {
            "mean": (sum(p["distinct_correct"] for p in with_correct) / len(with_correct)) if with_correct else None,
            "n_problems": len(with_correct),
            "share_ge3": _share([p["distinct_correct"] >= 3 for p in many_correct]),
            "n_problems_ge3_correct": len(many_correct)},
        "wrong_repeat": {"share": _share([p["top_wrong"] >= 2 for p in many_wrong]),
                         "n_problems_ge2_wrong": len(many_wrong)},
        "error_kinds": dict(sorted(kinds.items())) if has_kinds else None,
        "first_error_steps": {str(k): v for k, v in sorted(steps.items())} if has_steps else None,
    }


def format_stats(stats: dict) -> str:
    """A short plain-text table of rollout_stats output."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"
    n = stats["samples_per_problem"]
    n = n if isinstance(n, int) else f"{n[0]}-{n[1]}"
    dc, wr = stats["distinct_correct"], stats["wrong_repeat"]
    rows = [["problems x samples", f"{stats['n_problems']} x {n}"],
            ["pass@1", pct(stats["pass@1"])], [f"pass@{n}", pct(stats["pass@N"])],
            [f"majority@{n}", pct(stats["majority@N"])], ["answered", pct(stats["answered"])],
            ["distinct correct texts (mean)", "n/a" if dc["mean"] is None else f"{dc['mean']:.2f}"],
            [f">=3 distinct of >=3 correct (n={dc['n_problems_ge3_correct']})", pct(dc["share_ge3"])],
            [f"top wrong answer repeats (n={wr['n_problems_ge2_wrong']})", pct(wr["share"])]]
    lines = text_table(rows)
    if stats["error_kinds"]:
        lines.append("error kinds: " + ", ".join(f"{k} {v}" for k, v in stats["error_kinds"].items()))
    if stats["balanced"]:
        lines.append("(balanced: every problem was made to hold a correct and a wrong completion, so pass@N and "
                     "majority are not meaningful)")
    return "\n".join(lines)


def write_with_stats(output: str | os.PathLike, records: list[dict], cfg, balanced: bool = False) -> int:
    """Rollout records to `output` (JSONL), their statistics to <output>.stats.json, then the config beside them
    (the config last: it marks a finished output), all atomically; prints the statistics; returns the count."""

    stats = rollout_stats(records, balanced=balanced)

    def write(path, recs):
        n = write_jsonl(path, recs)
        write_json(stats_path(path), stats)
        return n

    n = write_result(output, records, cfg, write=write)
    print(format_stats(stats), flush=True)
    return n
