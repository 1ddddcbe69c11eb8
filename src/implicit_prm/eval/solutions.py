"""Scored solutions for the report: reading and checking them, picking which to show, shading their steps."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError, InputError
from ..core.validation import describe_json
from ..data.sources import input_records
from ..rewards import sigmoid
from ..scoring.records import is_presplit, number_list, outcome_label, score_leaves, scoring_separator
from ..scoring.schema import record_scale
from . import bon


class Code(str):
    """Inline code (file and method names) that the report renders as code, in Markdown and HTML alike."""

RED, GREEN = (230, 124, 115), (87, 187, 138)  # the colours at -m and +m; 0 is white


@dataclass
class Solution:
    line: int
    prompt: str
    text: str  # the response (pre-split: the steps joined by the scoring separator)
    spans: list[tuple[int, int]]  # (S,) character spans of the scored steps in `text`
    rewards: list[float]  # (S,)
    q_values: list[float]  # (S,)
    correct: int | None
    first_error: int | None  # the true first wrong step, -1 = none, None = unknown
    scores: dict[str, float]  # the score methods matching score_key
    problem: str | int | None = None  # the problem key, as `eval bon` groups responses (bon.KEY_FIELDS)
    error_kind: str | None = None  # the built-in v2 data's kind of mistake (None: absent or a correct response)
    probability: bool = False  # step rewards are P(+) of a step-tag scorer, not log-ratios (scoring/schema.py)


def read_solution(path, line, rec: dict, separator: str, score_key: str) -> Solution:
    """One scored record, checked: InputError naming the file, line and field."""
    key = "problem" if is_presplit(rec) and "problem" in rec else "prompt"
    prompt = rec.get(key, rec.get("problem"))
    if not isinstance(prompt, str):
        raise InputError(path, line, key, f"expected the prompt text, found {describe_json(prompt)}")
    if isinstance(rec.get("response"), str):
        text = rec["response"]
    elif is_presplit(rec) and isinstance(rec["steps"], list) and all(isinstance(s, str) for s in rec["steps"]):
        text = separator.join(rec["steps"])
    else:
        raise InputError(path, line, "response", "expected the response text (or a pre-split 'steps' list of strings)")
    hint = "; score the file first (`implicit-prm score`)"
    rewards = number_list(path, line, "step_rewards", rec.get("step_rewards"), hint)
    q = number_list(path, line, "q_values", rec.get("q_values"), hint)
    raw = rec.get("step_spans")
    if not isinstance(raw, list) or len(raw) != len(rewards):
        raise InputError(path, line, "step_spans", f"expected {len(rewards)} [start, end] spans, one per step "
                                                   f"reward, found {describe_json(raw)}")
    spans, prev = [], 0
    for i, s in enumerate(raw):
        if not (isinstance(s, list) and len(s) == 2 and all(type(x) is int for x in s) and prev <= s[0] <= s[1]
                <= len(text)):
            raise InputError(path, line, f"step_spans[{i}]", f"expected [start, end] with {prev} <= start <= end <= "
                             f"{len(text)} (the response length), found {describe_json(s)}")
        # `score` gives each step its span with the separator after it; hand-made spans may leave it out
        if is_presplit(rec) and (i >= len(rec["steps"]) or text[s[0]:s[1]] not in (
                rec["steps"][i], rec["steps"][i] + (separator if i < len(rec["steps"]) - 1 else ""))):
            raise InputError(path, line, f"step_spans[{i}]", f"{s} is not steps[{i}] in the steps joined by "
                             f"{separator!r}; keep `score`'s <file>.config.json (it names the step separator) beside "
                             "the scored file")
        spans.append((s[0], s[1]))
        prev = s[1]
    if len(q) != len(rewards):
        raise InputError(path, line, "q_values", f"has {len(q)} values but 'step_rewards' has {len(rewards)}")
    fe_key = "label" if is_presplit(rec) and "label" in rec else "first_error"
    fe = rec.get(fe_key)
    if fe is not None and (isinstance(fe, bool) or not isinstance(fe, int) or fe < -1):
        raise InputError(path, line, fe_key, f"expected -1 or a step index, found {describe_json(fe)}")
    got = outcome_label(path, line, rec)
    correct = got[1] if got else None if fe is None else int(fe == -1)
    scores = {}
    if "scores" in rec:
        leaves = score_leaves(path, line, rec["scores"], "prm")
        scores = {m: x for m, x in leaves.items() if m == score_key or m.endswith("." + score_key)}
        if not scores:
            raise ConfigError(f"field 'score_key': {score_key!r} matches none of {path}:{line}'s score methods "
                              f"{list(leaves)}; give an aggregation ('min') or a method ('prm.min')")
    problem = next((rec[k] for k in bon.KEY_FIELDS if k in rec), None)
    kind = rec.get("error_kind")
    return Solution(line, prompt, text, spans, rewards, q, correct, fe, scores, problem,
                    kind if isinstance(kind, str) else None, record_scale(rec) == "probability")


def read_solutions(path: str | Path, score_key: str) -> list[Solution]:
    path = Path(path)
    sep = scoring_separator(path)  # score's saved config names the separator of pre-split steps
    sols = [read_solution(path, line, rec, sep, score_key) for line, rec in input_records(path)]
    if not sols:
        raise InputError(path, None, None, "no records")
    return sols


def pick_solutions(sols: list[Solution], n: int) -> list[Solution]:
    """n solutions, deterministically (see the module docstring), in file order."""
    groups = {g: [s for s in sols if s.correct == g] for g in (0, 1, None)}
    n_bad = min(math.ceil(n / 2), len(groups[0]))
    n_good = min(n - n_bad, len(groups[1]))
    n_bad = min(n - n_good, len(groups[0]))  # the incorrect fill in for missing correct ones
    counts = {0: n_bad, 1: n_good, None: min(n - n_bad - n_good, len(groups[None]))}
    picked: list[Solution] = []
    for g, k in counts.items():
        # a known first wrong step first (>= 0 among the incorrect), then file order
        tiers = sorted(groups[g], key=lambda s: s.first_error is None or (g == 0 and s.first_error < 0))
        chosen, seen = {}, {s.prompt for s in picked}  # chosen: line -> solution
        for s in tiers:  # one per prompt first
            if len(chosen) < k and s.prompt not in seen:
                chosen[s.line] = s
                seen.add(s.prompt)
        for s in tiers:
            if len(chosen) < k:
                chosen.setdefault(s.line, s)
        picked += chosen.values()
    return sorted(picked, key=lambda s: s.line)


def reward_colour(r: float, scale: float) -> str:
    """CSS colour of a step reward: white at 0, RED at -scale (and below), GREEN at +scale (and above), linear."""
    t = 0.0 if scale <= 0 else max(-1.0, min(1.0, r / scale))
    end = RED if t < 0 else GREEN
    return "rgb({}, {}, {})".format(*(int(255 + (c - 255) * abs(t) + 0.5) for c in end))


def reward_emoji(r: float, scale: float) -> str:
    t = 0.0 if scale <= 0 else r / scale
    return "🟥" if t <= -0.5 else "🟧" if t <= -0.1 else "🟩" if t >= 0.1 else "⬜"


def _text_html(s: str) -> str:
    """Escaped model text on one line: newlines become <br>, so a Markdown HTML block never sees a blank line."""
    return html.escape(s.strip()).replace("\r\n", "\n").replace("\n", "<br>")


def solution_html(i: int, s: Solution, scale: float, emoji: bool, label: str = "") -> str:
    """One solution ("Solution i", or `label`) as a single HTML block with inline styles (no blank lines, so Markdown
    keeps it whole)."""
    ok = {1: "✓ correct", 0: "✗ incorrect", None: "correctness unknown"}[s.correct]
    fe = {None: "unknown", -1: "none (all steps right)"}.get(s.first_error, f"step {s.first_error}")
    head = (f"{label or f'Solution {i}'} (line {s.line}) · {ok} · true first wrong step: {fe}"
            + (f" · error kind: {s.error_kind}" if s.error_kind else "")
            + "".join(f" · {m} = {x:.3f}" for m, x in s.scores.items()))
    box = "margin:2px 0;padding:3px 6px;border-radius:3px;white-space:pre-wrap;"
    parts = ['<div style="border:1px solid #bbb;padding:6px;margin:1em 0">',
             f"<div><b>{html.escape(head)}</b></div>",
             f'<div style="{box}background:#f4f4f4"><i>Prompt:</i> {_text_html(s.prompt)}</div>']
    prev = 0
    for k, ((a, b), r, q) in enumerate(zip(s.spans, s.rewards, s.q_values)):
        if s.text[prev:a].strip():
            parts.append(f'<div style="{box}color:#777">{_text_html(s.text[prev:a])}</div>')
        wrong = k == s.first_error
        if s.probability:  # P(+) in [0, 1]: shaded around 1/2 on the same colour scale
            r, what = (r - 0.5) * 2 * scale, f"P(+) = {r:.3f}"
        else:
            what = f"r = {r:+.3f} · σ(q) = {float(sigmoid(q)):.3f}"
        label = (f"{reward_emoji(r, scale) + ' ' if emoji else ''}step {k} · {what}"
                 + (" · ✗ first wrong step" if wrong else ""))
        mark = "outline:3px solid #b00000;" if wrong else ""
        parts.append(f'<div style="{box}{mark}background:{reward_colour(r, scale)}">'
                     f'<span style="font-size:80%;color:#333"><b>[{html.escape(label)}]</b></span> '
                     f"{_text_html(s.text[a:b])}</div>")
        prev = b
    if s.text[prev:].strip():
        parts.append(f'<div style="{box}color:#777"><i>(not scored)</i> {_text_html(s.text[prev:])}</div>')
    return "\n".join(parts) + "\n</div>"
