"""Best-of-N evaluation of scored responses (the paper's Fig. 2 / Table 1): top-1 by score, voting, pass@N, random.

Input: JSONL (or a JSON array) with one scored response per line, N_max per problem:
  problem key   `problem_id` if present, else `prompt`, else `problem` (responses are grouped by it, in file order)
  correctness   `correct` (true/false), else `correctness` (true/false, rollout output), else `label` (0/1)
  answer        `extracted_answer` (string; null/missing/blank -> next), else `answer_pred`, else the grader's own
                extraction from `response` (pre-split records: the `steps` joined by the separator in score's
                <file>.config.json, default "\n\n"): the last \boxed{}, "The answer is X" / "Answer: X", "#### N",
                else the last number (grading.extract_answer). Answers vote under records.vote_key: the grader's
                normalize_answer + its string key, exact numbers in one form ("1,000" = "1000", "0.5" = "\frac12");
                a string key, no math-verify. A response with no answer does not vote; a file where no response has
                one is refused (InputError). The built-in `answer` field is the true answer and is never used.
  scores        flat {agg: number} (one source, named by `name`, default "prm": methods "prm.min", ...), or nested
                {source: {agg: number}} (methods "source.agg"). Every numeric leaf is one score method, and every
                record must carry the same methods.

Methods, for each N (accuracies over problems):
  <source.agg>                       the top-scored response is correct
  majority                           the most frequent answer is correct
  weighted_majority.<source.agg>     the answer with the largest sum of sigmoid(score) (the reference choice);
                                     for a scorer whose scores are probabilities (reward_schema), of the scores
  weighted_majority_raw.<source.agg> the answer with the largest sum of raw scores: only for scores that cannot be
                                     negative (scale 'probability', where it is the weighted majority above). A sum
                                     of log-ratios or logits is no vote: each negative score counts against its
                                     answer, so it favours the answer with the fewest votes; those methods are listed
                                     in "weighted_majority_raw_left_out" and named under the table (raw_vote_note)
  pass@N                             some response is correct
  random                             the expected accuracy of a uniform pick (mean correctness, exact)
Subsets: "first" = the first N responses of each problem (the paper's protocol); "random" = the mean over n_subsets
random subsets of size N per problem (numpy Generator seeded with [seed, N]); std = the spread of the accuracy
across subset draws. N equal to the sample count uses the full set once (std 0).

Output JSON (schema "implicit-prm/bon/v1"):
  {"schema", "input", "n_problems", "samples_per_problem", "n_responses", "answered" (fraction with an answer),
   "n_answers_extracted" (responses whose answer came from the text, not a field),
   "subsets", "n_subsets" (1 for "first"), "seed", "ns": [N...], "score_methods": [...],
   "methods": {method: {"acc": [one per N], "std": [one per N], "ci": [[lo, hi] per N] | null,
                        "minus_majority": {"diff": [one per N], "ci": [[lo, hi] per N] | null}}}, "tie_rule": str,
   "weighted_majority_raw_left_out": {score method: its scale} (no raw vote for them),
   "n_bootstrap", "ci_level" (ci: percentile bootstrap interval over problems, null when n_bootstrap = 0;
   minus_majority: the paired difference with majority voting, on the same resamples; not on majority itself),
   "truncated": null | {"min_count", "max_count", "samples_per_problem"} (ragged input cut with ragged="truncate")}
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import atomic_open
from ..core.results import text_table, write_result
from ..core.validation import describe_json
from ..data.grading import vote_key
from ..data.sources import input_records
from ..scoring.records import outcome_label, read_scores, record_answer, score_scales, scoring_separator
from ..scoring.schema import to_probability
from .metrics import CI_LEVEL, bootstrap_mean_ci, check_bootstrap, ci_list, fmt_ci

SCHEMA = "implicit-prm/bon/v1"
VOTE_RTOL, VOTE_ATOL = 1e-9, 1e-12  # weighted vote totals this close count as tied
TIE_RULE = ("top-1: equal top scores -> the earliest response in file order; voting: null answers do not vote, "
            f"equal totals (within {VOTE_RTOL:g} relative) -> the answer that appears first in the subset (file "
            "order), no answer at all -> wrong; a voted answer is as correct as its first response in the subset")
KEY_FIELDS = ("problem_id", "prompt", "problem")
RAW_VOTE_SCALES = ("probability",)  # scales that cannot be negative: only these get a weighted_majority_raw vote


@dataclass
class BonConfig:
    input: str = field(help="scored responses (JSONL), several per problem; see `implicit_prm.eval.bon` for fields")
    output: Optional[str] = field(None, help="JSON results (default: <input stem>.bon.json)")
    plot: Optional[str] = field(None, help="PNG plot of accuracy vs N (default: <input stem>.bon.png)")
    subsets: Literal["random", "first"] = field("random", help="random subsets of size N (mean over n_subsets), "
                                                               "or the first N responses (the paper's protocol)")
    n_subsets: int = field(100, help="random subsets drawn per problem and N")
    ns: list[int] = field([], help="the N values (default: 1, 2, 4, ... below the sample count, and the count)")
    name: str = field("prm", help="source name for flat scores {agg: number}: methods '<name>.<agg>'")
    seed: int = field(0, help="random seed of the subsets and of the bootstrap")
    ragged: Literal["error", "truncate"] = field("error", help="problems with different sample counts: fail, or "
                                                               "cut every problem to the smallest count")

    n_bootstrap: int = field(1000, help="bootstrap resamples of the problems for the confidence intervals (0: none)")
    ci_level: float = field(CI_LEVEL, help="confidence level of the percentile bootstrap intervals")

    def __post_init__(self):
        check_bootstrap(self.n_bootstrap, self.ci_level)
        if self.n_subsets < 1:
            raise ConfigError(f"field 'n_subsets' must be at least 1, got {self.n_subsets}")
        if any(n < 1 for n in self.ns):
            raise ConfigError(f"field 'ns' must hold sizes >= 1, got {self.ns}")


@dataclass
class Responses:
    """All problems' responses in file order, cut to the same count K."""

    correct: np.ndarray  # (P, K) bool
    answers: np.ndarray  # (P, K) int: vote-key id within its problem (first-appearance order), -1 = no answer
    scores: np.ndarray  # (P, K, M) float
    methods: list[str]  # (M,) score method names
    truncated: dict | None
    n_extracted: int = 0  # of the P * K responses, those whose answer was extracted from the text
    scales: list[str] | None = None  # (M,) 'log_ratio' / 'logit' (weighted by sigmoid) or 'probability' (as it is)


def read_responses(path: str | Path, name: str = "prm", ragged: str = "error") -> Responses:
    """Group scored responses by problem; InputError naming file, line and field for any bad or inconsistent record."""
    groups: dict = {}  # problem key -> [(line, correct, (vote key, extracted), scores)]
    separator = scoring_separator(path)  # joins pre-split steps for answer extraction
    key_fields: dict = {}  # problem key -> the field it came from
    first: tuple[int, list[str]] | None = None  # (line, methods) of the first record
    for line, rec in input_records(path):
        key_field = next((k for k in KEY_FIELDS if k in rec), None)
        if key_field is None:
            raise InputError(path, line, "problem_id", "missing; expected 'problem_id', 'prompt' or 'problem' to "
                                                       "group responses by problem")
        key = rec[key_field]
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise InputError(path, line, key_field, f"expected a string or integer, found {describe_json(key)}")
        found = outcome_label(path, line, rec)
        if found is None:
            raise InputError(path, line, "correct", "missing correctness: expected 'correct' (true/false), "
                                                    "'correctness' (true/false), 'label' (0/1), or for pre-split "
                                                    "records 'final_answer_correct'")
        correct = found[1]
        scores = read_scores(path, line, rec, name, first)
        if first is None:
            first = (line, list(scores))
            scales = score_scales(rec, scores, name)
        key_fields.setdefault(key, key_field)
        answer, extracted = record_answer(path, line, rec, separator)
        vote = None if answer is None else vote_key(answer)
        groups.setdefault(key, []).append((line, correct, (vote, extracted and vote is not None), scores))
    if first is None:
        raise InputError(path, None, None, "no records")

    counts = [len(g) for g in groups.values()]
    k, truncated = min(counts), None
    if max(counts) != k:
        if ragged == "error":
            key0, g0 = next(iter(groups.items()))
            key1, g1 = next((kk, g) for kk, g in groups.items() if len(g) != len(g0))
            raise InputError(path, g1[0][0], key_fields[key1], f"problem {key1!r} has {len(g1)} responses but problem "
                             f"{key0!r} (line {g0[0][0]}) has {len(g0)}; every problem needs the same number (or "
                             f"use ragged='truncate' to cut every problem to the smallest count, {k})")
        truncated = {"min_count": k, "max_count": max(counts), "samples_per_problem": k}
    methods = first[1]  # in the first record's order
    correct = np.zeros((len(groups), k), dtype=bool)
    answers = np.full((len(groups), k), -1, dtype=np.int64)
    scores = np.zeros((len(groups), k, len(methods)))
    n_extracted = 0
    for p, g in enumerate(groups.values()):
        ids: dict[str, int] = {}
        for j, (_, c, (a, extracted), s) in enumerate(g[:k]):
            correct[p, j] = bool(c)
            if a is not None:
                answers[p, j] = ids.setdefault(a, len(ids))
                n_extracted += extracted
            scores[p, j] = [s[m] for m in methods]
    if not (answers >= 0).any():
        raise InputError(path, None, "extracted_answer", "no response has a final answer (no 'extracted_answer' and "
                         "none found in the response text: no \\boxed{}, 'The answer is X', '#### N' or number), so "
                         "majority and weighted votes cannot be counted; grade the responses first (`implicit-prm "
                         f"grade --input {path} --output GRADED.jsonl --reference-field answer`, then `eval bon` on "
                         "GRADED.jsonl) or add 'extracted_answer' to each record")
    return Responses(correct, answers, scores, methods, truncated, n_extracted, [scales[m] for m in methods])


def subset_indices(n_problems: int, k: int, n: int, subsets: str, n_subsets: int, seed: int) -> np.ndarray:
    """(P, D, N) response indices, ascending within each subset: D = 1 for "first" or N == K, else n_subsets."""
    if subsets == "first" or n == k:
        return np.broadcast_to(np.arange(n), (n_problems, 1, n))
    keys = np.random.default_rng([seed, n]).random((n_problems, n_subsets, k))  # (P, D, K)
    return np.sort(np.argsort(keys, axis=-1)[..., :n], axis=-1)  # a uniform N-subset, kept in file order


def top1_correct(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """(P, D, N, M) scores, (P, D, N) correctness -> (P, D, M): is the top-scored response correct (ties: earliest)."""
    best = scores.argmax(axis=2)  # (P, D, M); argmax returns the first of equal maxima
    return np.take_along_axis(correct, best, axis=2)


class Votes:
    """The answers of a batch of subsets (P, D, N), tallied per (problem, subset, answer id) with bincount."""

    def __init__(self, answers: np.ndarray, correct: np.ndarray, k: int):
        P, D, N = answers.shape
        self.shape, self.correct, self.valid = (P, D, k), correct, answers >= 0
        cell = np.arange(P * D).reshape(P, D, 1) * k + answers  # (P, D, N): flat (problem, subset, answer) bin
        self.cell = cell[self.valid]  # (V,), in (p, d, n) order
        pos = np.broadcast_to(np.arange(N), answers.shape)[self.valid]  # (V,) position of each vote in its subset
        uniq, first_vote = np.unique(self.cell, return_index=True)
        self.first = np.full(P * D * k, N)
        self.first[uniq] = pos[first_vote]
        self.first = self.first.reshape(P, D, k)  # position of each answer's first vote; N = absent
        self.present = self.first < N  # (P, D, k)

    def winner_correct(self, weights: np.ndarray) -> np.ndarray:
        """(P, D, N) vote weights -> (P, D): is the answer with the largest total correct (ties: first in subset)."""
        totals = np.bincount(self.cell, weights=weights[self.valid], minlength=int(np.prod(self.shape)))
        totals = np.where(self.present, totals.reshape(self.shape), -np.inf)  # (P, D, k)
        best = totals.max(axis=-1, keepdims=True)
        tied = self.present & np.isclose(totals, best, rtol=VOTE_RTOL, atol=VOTE_ATOL)
        pos = np.where(tied, self.first, np.iinfo(np.int64).max).min(axis=-1)  # (P, D) first vote of the winner
        has = self.present.any(axis=-1)
        pos = np.where(has, pos, 0)
        return has & np.take_along_axis(self.correct, pos[..., None], axis=2)[..., 0]


def raw_left_out(data: Responses) -> dict[str, str]:
    """{score method: scale} of the methods with no weighted_majority_raw vote (scale not in RAW_VOTE_SCALES)."""
    scales = data.scales or ["log_ratio"] * len(data.methods)
    return {m: s for m, s in zip(data.methods, scales) if s not in RAW_VOTE_SCALES}


def raw_vote_note(result: dict) -> str | None:
    """Why the result has no weighted_majority_raw row for some methods; None when none was left out."""
    left = result.get("weighted_majority_raw_left_out") or {}
    if not left:
        return None
    names = ", ".join(f"{m} ({s})" for m, s in left.items())
    return (f"weighted_majority_raw is left out for {names}: a raw sum of scores that can be negative counts each "
            "negative vote against its answer, so it favours the answer with the fewest votes; weighted_majority "
            "(the sum of sigmoid(score)) is the weighted vote for them")


def evaluate(data: Responses, ns: list[int], subsets: str = "random", n_subsets: int = 100,
             seed: int = 0, n_bootstrap: int = 1000, level: float = CI_LEVEL) -> dict[str, dict[str, list]]:
    """{method: {"acc": [per N], "std": [per N], "ci": [[lo, hi] per N] | None, "minus_majority": {"diff": [per N],
    "ci": [[lo, hi] per N] | None}}} over problems p and subset draws d (no minus_majority for majority itself).

    acc = mean_d mean_p hit[p, d] = mean_p a_p, with a_p = mean_d hit[p, d] the problem's accuracy over its draws;
    std = the std over d of mean_p hit[p, d]; ci = the percentile bootstrap interval (Efron & Tibshirani 1993) of
    mean_p a_p over n_bootstrap resamples of the problems with replacement (draws held fixed; one set of resamples,
    seeded with `seed`, shared by every method and N): the 100 (1 -+ level) / 2 percentiles. None if n_bootstrap = 0.
    minus_majority is the paired comparison: mean_p (a_p - a_p of majority voting) and its interval over the same
    resamples, which is narrower than the two separate intervals suggest when the methods agree on most problems.
    """
    P, K, M = data.scores.shape
    scale = data.scales or ["log_ratio"] * M
    left_out = raw_left_out(data)
    out: dict[str, dict[str, list]] = {}
    per_problem: dict[str, list[np.ndarray]] = {}  # method -> [a_p (P,) per N]
    for n in ns:
        idx = subset_indices(P, K, n, subsets, n_subsets, seed)  # (P, D, N)
        correct = np.take_along_axis(data.correct[:, None, :], idx, axis=2)  # (P, D, N)
        answers = np.take_along_axis(data.answers[:, None, :], idx, axis=2)  # (P, D, N)
        scores = np.take_along_axis(data.scores[:, None], idx[..., None], axis=2)  # (P, D, N, M)
        votes = Votes(answers, correct, K)
        top = top1_correct(scores, correct)  # (P, D, M)
        hits = {m: top[..., j] for j, m in enumerate(data.methods)}  # each (P, D)
        hits["majority"] = votes.winner_correct(np.ones(answers.shape))
        for j, m in enumerate(data.methods):
            hits[f"weighted_majority.{m}"] = votes.winner_correct(to_probability(scores[..., j], scale[j]))
        for j, m in enumerate(data.methods):
            if m not in left_out:  # a raw sum only of scores that cannot be negative
                hits[f"weighted_majority_raw.{m}"] = votes.winner_correct(scores[..., j])
        hits["pass@N"] = correct.any(axis=-1)
        hits["random"] = correct.mean(axis=-1)
        for m, h in hits.items():
            acc = h.mean(axis=0)  # (D,) accuracy of each subset draw
            out.setdefault(m, {"acc": [], "std": []})
            out[m]["acc"].append(float(acc.mean()))
            out[m]["std"].append(float(acc.std()))
            per_problem.setdefault(m, []).append(h.mean(axis=1))
    values = np.stack([np.stack(per_problem[m], axis=-1) for m in out], axis=1)  # (P, methods, N)
    diff = values - values[:, [list(out).index("majority")]]  # (P, methods, N): paired with majority voting
    # one set of resamples of the problems for the accuracies and their paired differences: (2 methods, N, 2)
    both = bootstrap_mean_ci(np.concatenate([values, diff], axis=1), n_bootstrap, seed, level)
    ci, diff_ci = (None, None) if both is None else (both[:len(out)], both[len(out):])
    for i, m in enumerate(out):
        out[m]["ci"] = None if ci is None else ci_list(ci[i])
        if m != "majority":
            out[m]["minus_majority"] = {"diff": [float(x) for x in diff[:, i].mean(axis=0)],
                                        "ci": None if diff_ci is None else ci_list(diff_ci[i])}
    return out


def resolve_ns(ns: list[int], k: int) -> list[int]:
    """The N values, ascending: the given ones (each <= k), or 1, 2, 4, ... below k, and k."""
    if not ns:
        return [2 ** i for i in range(k.bit_length()) if 2 ** i < k] + [k]
    bad = [n for n in ns if n > k]
    if bad:
        raise ConfigError(f"field 'ns': N = {bad} larger than the {k} samples per problem; use N <= {k}")
    return sorted(set(ns))


def plot_methods(score_methods: list[str]) -> list[str]:
    """Plotted lines: the min-score method(s) (else the first), majority, their weighted majority, pass@N, random."""
    mins = [m for m in score_methods if m.endswith(".min")] or score_methods[:1]
    return [*mins, "majority", *(f"weighted_majority.{m}" for m in mins), "pass@N", "random"]


def plot_bon(result: dict, path: str | Path, methods: list[str]) -> None:
    """Accuracy vs N on a log2 axis, one line per method, written atomically. The band: the bootstrap interval over
    problems ("ci", gaps where it is undefined), else (results without intervals) +-1 std over random subsets."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ns = result["ns"]
    bands: set[str] = set()  # what the drawn bands show, for the title
    for m in methods:
        acc, std = np.array(result["methods"][m]["acc"]) * 100, np.array(result["methods"][m]["std"]) * 100
        (line,) = ax.plot(ns, acc, marker="o", label=m)
        ci = result["methods"][m].get("ci")
        if ci:
            lo, hi = (np.array([np.nan if c is None else 100 * c[i] for c in ci]) for i in (0, 1))
            what = f"{100 * result.get('ci_level', CI_LEVEL):g}% bootstrap interval over problems"
        else:
            lo, hi, what = acc - std, acc + std, "±1 std over random subsets"
        if (hi > lo).any():
            ax.fill_between(ns, lo, hi, color=line.get_color(), alpha=0.15)
            bands.add(what)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (responses per problem)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"best-of-N: {Path(result['input']).name} ({result['n_problems']} problems, {result['subsets']})"
                 + "".join(f"\nband: {b}" for b in sorted(bands)), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def format_table(result: dict) -> str:
    """Rows = methods, columns = N; accuracy in %, with +-std for random subsets, and under each method its bootstrap
    interval [lo, hi] (%) over problems when there is one."""
    show_std = result["subsets"] == "random"
    rows = [["method", *(f"N={n}" for n in result["ns"])]]
    for m, r in result["methods"].items():
        cells = (f"{100 * a:.1f}" + (f"±{100 * s:.1f}" if show_std else "") for a, s in zip(r["acc"], r["std"]))
        rows.append([m, *cells])
        if r.get("ci"):
            rows.append(["", *(fmt_ci(c) for c in r["ci"])])
    lines = text_table(rows)
    if note := raw_vote_note(result):
        lines.append(note)
    if result.get("n_bootstrap") and any(r.get("ci") for r in result["methods"].values()):
        lines.append(f"[lo, hi]: {100 * result['ci_level']:g}% percentile bootstrap interval over the "
                     f"{result['n_problems']} problems ({result['n_bootstrap']} resamples)")
    return "\n".join(lines)


def run_bon(cfg: BonConfig) -> dict:
    """The best-of-N evaluation: read, check, evaluate each N, print the table, write JSON + plot + config."""
    path = Path(cfg.input)
    data = read_responses(path, cfg.name, cfg.ragged)
    P, K, _ = data.scores.shape
    if data.truncated:
        print(f"[implicit-prm] bon: problems have {data.truncated['min_count']} to {data.truncated['max_count']} "
              f"responses; every problem is cut to its first {K}")
    if data.n_extracted:
        print(f"[implicit-prm] bon: {data.n_extracted} of {P * K} answers read from the response text "
              f"(no 'extracted_answer'); {int((data.answers < 0).sum())} responses have none and do not vote")
    ns = resolve_ns(cfg.ns, K)
    result = {"schema": SCHEMA, "input": str(path), "n_problems": P, "samples_per_problem": K,
              "n_responses": P * K, "answered": float((data.answers >= 0).mean()),
              "n_answers_extracted": data.n_extracted, "subsets": cfg.subsets,
              "n_subsets": cfg.n_subsets if cfg.subsets == "random" else 1, "seed": cfg.seed, "ns": ns,
              "score_methods": data.methods, "methods": evaluate(data, ns, cfg.subsets, cfg.n_subsets, cfg.seed,
                                                                   cfg.n_bootstrap, cfg.ci_level),
              "tie_rule": TIE_RULE, "weighted_majority_raw_left_out": raw_left_out(data),
              "truncated": data.truncated, "n_bootstrap": cfg.n_bootstrap,
              "ci_level": cfg.ci_level}
    print(format_table(result))

    output = Path(cfg.output) if cfg.output else path.with_name(path.stem + ".bon.json")
    plot = Path(cfg.plot) if cfg.plot else path.with_name(path.stem + ".bon.png")
    plot_bon(result, plot, plot_methods(data.methods))
    write_result(output, result, replace(cfg, output=str(output), plot=str(plot), ns=ns))
    print(f"[implicit-prm] wrote {output} and {plot}")
    return result
