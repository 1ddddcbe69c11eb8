"""The report's error analysis of a scored file: the problems whose top-1 pick is wrong.

Responses are grouped by problem as `eval bon` groups them (the first of bon.KEY_FIELDS a record has, in file
order), and a problem's top-1 pick is its highest-scored response under the report's score_key (the first method
that matches it; ties: the earliest in file order, bon's rule), among all of the problem's responses. A problem with
a response that lacks that score or its correctness is left out (and counted). For the wrong picks the section shows
  - the mistakes by `error_kind` (the built-in v2 data's per-response field; "unknown" when absent, as on pre-split
    or ProcessBench data), beside the kinds of every incorrect response of the judged problems (a kind with 0 wrong
    picks never scored top in its problem);
  - the scores of the wrong picks against those of every correct response of the judged problems: a histogram (the
    fraction of each group per bin, shared bins) and count, median and quartiles (numpy's linear percentiles);
  - for up to n_errors problems (those with a correct response first, each group in file order), the pick beside
    the problem's best-scored correct response, both shaded step by step as the report's solutions.
A page where every top-1 pick is right says so, without tables or plot.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.io import atomic_open
from .solutions import Code, Solution, solution_html


@dataclass
class Mistake:
    problem: str | int
    pick: Solution  # the wrong top-1 pick
    best_correct: Solution | None  # the problem's best-scored correct response, None when it has none


@dataclass
class Analysis:
    method: str  # the score method ranking the responses
    n_judged: int  # problems whose every response has the score and its correctness
    n_skipped: int  # the other problems
    mistakes: list[Mistake]  # in file order of the problems
    correct_scores: list[float]  # every correct response of the judged problems
    kinds: Counter  # error_kind -> wrong picks
    all_kinds: Counter  # error_kind -> incorrect responses of the judged problems

    @property
    def wrong_scores(self) -> list[float]:
        return [m.pick.scores[self.method] for m in self.mistakes]


def kind(s: Solution) -> str:
    return s.error_kind or "unknown"


def analyse(sols: list[Solution]) -> Analysis | None:
    """Top-1 picks per problem and their mistakes; None when no solution has a score matching score_key."""
    method = next((m for s in sols for m in s.scores), None)
    if method is None:
        return None
    groups: dict = {}
    for s in sols:
        groups.setdefault(s.problem, []).append(s)
    mistakes, correct, all_kinds, judged = [], [], Counter(), 0
    for key, g in groups.items():
        if any(method not in s.scores or s.correct is None for s in g):
            continue
        judged += 1
        correct += [s.scores[method] for s in g if s.correct]
        all_kinds.update(kind(s) for s in g if not s.correct)
        pick = max(g, key=lambda s: s.scores[method])  # max keeps the first of equal scores
        if not pick.correct:
            best = max((s for s in g if s.correct), key=lambda s: s.scores[method], default=None)
            mistakes.append(Mistake(key, pick, best))
    return Analysis(method, judged, len(groups) - judged, mistakes, correct, Counter(kind(m.pick) for m in mistakes),
                    all_kinds)


def summary(scores: list[float]) -> list[str]:
    """Count, median, first and third quartile (three decimals; "—" for none)."""
    if not scores:
        return ["0", "—", "—", "—"]
    q1, med, q3 = np.percentile(scores, [25, 50, 75])
    return [str(len(scores)), f"{med:.3f}", f"{q1:.3f}", f"{q3:.3f}"]


def plot_scores(a: Analysis, path: str | Path) -> bool:
    """Histogram of the wrong picks' scores against the correct responses' scores, written atomically; False (and
    nothing written) when there is no mistake."""
    if not a.mistakes:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    groups = [(a.wrong_scores, "wrong top-1 picks"), (a.correct_scores, "correct responses")]
    every = np.concatenate([np.asarray(v, dtype=np.float64) for v, _ in groups])
    edges = np.histogram_bin_edges(every, bins=int(min(30, max(5, len(every) // 4))))
    for values, name in groups:
        if values:
            ax.hist(values, bins=edges, weights=np.full(len(values), 1 / len(values)), alpha=0.5,
                    label=f"{name} (n={len(values)})")
    ax.set_xlabel(f"score ({a.method})")
    ax.set_ylabel("fraction of the group")
    ax.set_title("scores of wrong top-1 picks vs correct responses", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    return True


def side_by_side(left: str, right: str) -> str:
    """Two HTML blocks in two columns (stacked where styles are stripped); no blank lines, for Markdown."""
    col = '<div style="flex:1;min-width:0">'
    return (f'<div style="display:flex;gap:8px;align-items:flex-start">\n{col}\n{left}\n</div>\n{col}\n{right}\n'
            "</div>\n</div>")


def error_blocks(path: Path, a: Analysis, n_errors: int, emoji: bool, image: str | None) -> list[tuple]:
    """The section's page blocks (report.render); `image`: the uri of plot_scores's histogram."""
    skipped = (f" {a.n_skipped} problems are left out: a response lacks the score or its correctness."
               if a.n_skipped else "")
    blocks: list[tuple] = [
        ("h", f"Top-1 mistakes: {path.name}"),
        ("p", ["Each problem's top-1 pick is its highest-scored response by ", Code(a.method), " (ties: the "
               f"earliest, as in eval bon): {len(a.mistakes)} of {a.n_judged} problems pick a wrong one.{skipped}"])]
    if not a.mistakes:
        return [*blocks, ("p", ["Every top-1 pick is correct: no mistakes to analyse."])]
    n = len(a.mistakes)
    rows = [[k, str(a.kinds[k]), f"{100 * a.kinds[k] / n:.1f}", str(a.all_kinds[k])]
            for k in sorted(a.all_kinds, key=lambda k: (-a.kinds[k], -a.all_kinds[k], k))]
    none = " No record carries it." if set(a.all_kinds) <= {"unknown"} else ""
    blocks += [("table", ["error kind", "wrong top-1 picks", "% of them", "incorrect responses"], rows),
               ("p", ["Error kind: the response's ", Code("error_kind"), " (built-in v2 data), else unknown." + none]),
               ("table", ["scores", "count", "median", "Q1", "Q3"],
                [["wrong top-1 picks", *summary(a.wrong_scores)], ["correct responses", *summary(a.correct_scores)]])]
    if image:
        blocks.append(("img", image, "scores of wrong top-1 picks and correct responses"))
    shown = sorted(a.mistakes, key=lambda m: m.best_correct is None)[:n_errors]  # stable: file order in each group
    if not shown:
        return blocks
    scale = max((abs(r) for m in shown for s in (m.pick, m.best_correct) if s for r in s.rewards), default=0.0)
    blocks.append(("p", [f"{len(shown)} of the {n} problems: the wrong pick (left) beside the best-scored correct "
                         "response (right), each step shaded by its reward from red (-m) through white (0) to green "
                         f"(+m), m = {scale:.3g}."]))
    for m in shown:
        right = (solution_html(0, m.best_correct, scale, emoji, "Best-scored correct response") if m.best_correct
                 else "<div><i>No correct response to this problem.</i></div>")
        key = str(m.problem) if len(str(m.problem)) <= 80 else str(m.problem)[:77] + "…"
        blocks += [("p", ["Problem ", Code(key.replace("\n", " "))]),
                   ("raw", side_by_side(solution_html(0, m.pick, scale, emoji, "Top-1 pick"), right))]
    return blocks
