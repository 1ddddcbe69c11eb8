"""One Markdown or self-contained HTML page from the eval outputs: best-of-N, step-error and outcome tables, plots,
and single solutions with each step shaded by its reward.

Sections, in this order, one per input file:
  best-of-N   methods x N accuracy (%), ± the std over random subsets; the PNG plot that `eval bon` wrote (the path
              in its `<json>.config.json`, else `<stem>.bon.png` beside `<stem>.bon.json`), made with bon.plot_bon
              if missing
  step errors ProcessBench acc_err / acc_ok / F1 (%): the tuned, evaluated and optimistic rows, each labelled
  outcome     AUROC, accuracy (%) at score > 0, and the optimistic best-threshold accuracy
  solutions   `n_solutions` responses from a scored file: the prompt, then every step on a background from red
              (the most negative step reward shown, -m) through white (0) to green (+m), labelled with the step
              reward r and sigmoid(q-value); the true first wrong step (`first_error`, or ProcessBench `label` on
              pre-split records) is outlined and marked "✗ first wrong step".
Which solutions: half (rounded up) incorrect and the rest correct (correctness as in `eval outcome`; without it, a
known first wrong step >= 0 counts as incorrect and -1 as correct), filled from the other group and then the unknown
ones when a group runs short. Within a group, records with a known first wrong step come first, then one per prompt
before a prompt repeats, each in file order; the chosen ones are shown in file order.

Formats: .html is one file (inline CSS, plots as base64 data URIs). .md links the plots by relative path (a missing
plot is drawn beside the .md as <md stem>.bon<i>.png) and shows the solutions as an HTML block with inline styles
(VS Code, pandoc and most viewers shade it). GitHub strips `style` attributes, so in Markdown each step label also
starts with an emoji square from the same scale: 🟥 r <= -m/2, 🟧 r <= -m/10, ⬜ |r| < m/10, 🟩 r >= m/10.
All model text is HTML-escaped. The page is written atomically, after every input has been read and checked.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import field
from ..data.formats import describe_json
from ..errors import ConfigError, InputError
from ..io import read_json_records, write_text
from ..results import config_path, write_result
from . import bon, outcome, steps
from .metrics import fmt_auroc, pct, sigmoid
from .records import is_presplit, number_list, outcome_label, score_leaves

RED, GREEN = (230, 124, 115), (87, 187, 138)  # the colours at -m and +m; 0 is white


@dataclass
class ReportConfig:
    output: str = field(help="the report: .md (Markdown, plots linked) or .html (one self-contained file)")
    bon: list[str] = field([], help="best-of-N results (JSON from `implicit-prm eval bon`)")
    steps: list[str] = field([], help="step-error results (JSON from `implicit-prm eval steps`)")
    outcome: list[str] = field([], help="outcome results (JSON from `implicit-prm eval outcome`)")
    scored: Optional[str] = field(None, help="scored JSONL (from `implicit-prm score`) for the solutions shaded step by step")
    n_solutions: int = field(6, help="solutions to show from --scored")
    score_key: str = field("min", help="score shown per solution: an aggregation ('min') or a method ('prm.min')")
    title: str = field("implicit-prm report", help="page title")

    def __post_init__(self):
        if Path(self.output).suffix.lower() not in (".md", ".html"):
            raise ConfigError(f"field 'output' must end in .md or .html, got {self.output!r}")
        if self.n_solutions < 0:
            raise ConfigError(f"field 'n_solutions' must be >= 0, got {self.n_solutions}")
        if not (self.bon or self.steps or self.outcome or self.scored):
            raise ConfigError("nothing to report: give at least one of bon, steps, outcome, scored")


# ---- page blocks, rendered to HTML or Markdown -------------------------------------------------------------------

class Code(str):
    """Inline code (file and method names) in a paragraph or table cell."""


def _md(s: str) -> str:
    if isinstance(s, Code):
        return f"`` {s} ``" if "`" in s else f"`{s}`"
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", s)


def _html(s: str) -> str:
    return f"<code>{html.escape(s)}</code>" if isinstance(s, Code) else html.escape(s)


def render(blocks: list[tuple], fmt: str, title: str) -> str:
    """blocks: ("h", text) | ("p", [parts]) | ("table", headers, rows) | ("img", uri, alt) | ("raw", html block)."""
    out = []
    for kind, *a in blocks:
        if kind == "h":
            out.append(f"## {_md(a[0])}" if fmt == "md" else f"<h2>{_html(a[0])}</h2>")
        elif kind == "p":
            out.append("".join(map(_md, a[0])) if fmt == "md" else f"<p>{''.join(map(_html, a[0]))}</p>")
        elif kind == "table" and fmt == "md":
            headers, rows = a[0], a[1]
            cell = lambda c: _md(c).replace("|", "\\|") if isinstance(c, Code) else _md(c)  # noqa: E731
            lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "|".join([" --- "] + [" ---: "] *
                                                                                   (len(headers) - 1)) + "|"]
            lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "table":
            head = "".join(f"<th>{_html(h)}</th>" for h in a[0])
            body = "".join("<tr>" + "".join(f"<td>{_html(c)}</td>" for c in r) + "</tr>" for r in a[1])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            out.append(f"![{_md(a[1])}]({a[0]})" if fmt == "md" else f'<img src="{a[0]}" alt="{html.escape(a[1])}">')
        elif kind == "raw":
            out.append(a[0])
    if fmt == "md":
        return f"# {_md(title)}\n\n" + "\n\n".join(out) + "\n"
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:2px 8px}"
             "td+td,th+th{text-align:right}img{max-width:100%}code{background:#f4f4f4;padding:0 3px}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(out)
            + "\n</body></html>\n")


# ---- the eval results --------------------------------------------------------------------------------------------

def load_result(path: str | Path, schema: str, keys: tuple[str, ...]) -> dict:
    """A result JSON of the given schema with the given keys, else InputError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, None, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, None, f"malformed JSON: {e.msg}") from None
    found = data.get("schema") if isinstance(data, dict) else data
    if found != schema:
        raise InputError(path, None, "schema", f"expected {schema!r}, found {describe_json(found)}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(path, None, missing[0], f"missing from this {schema} result")
    return data


def bon_plot_path(json_path: Path) -> Path | None:
    """The plot `eval bon` wrote: the `plot` in <json>.config.json, else <stem>.bon.png beside <stem>.bon.json."""
    cands = []
    cfg = config_path(json_path)
    try:
        plot = json.loads(cfg.read_text(encoding="utf-8")).get("plot") if cfg.is_file() else None
    except (OSError, ValueError, AttributeError):  # an unreadable config only loses this hint
        plot = None
    if isinstance(plot, str):
        cands += [Path(plot), json_path.parent / Path(plot).name]  # as run, or moved along with the JSON
    cands.append(json_path.with_suffix(".png"))  # bon.py's defaults share the <input stem>.bon base
    return next((p for p in cands if p.is_file()), None)


def bon_blocks(path: Path, r: dict, image: str) -> list[tuple]:
    std = r["subsets"] == "random"
    how = (f"mean ± std over {r['n_subsets']} random subsets per problem (seed {r['seed']})" if std
           else "the first N responses of each problem")
    rows = [[Code(m), *(f"{100 * a:.1f}" + (f" ± {100 * s:.1f}" if std else "") for a, s in zip(v["acc"], v["std"]))]
            for m, v in r["methods"].items()]
    cut = (f" Ragged input: every problem cut to its first {r['truncated']['samples_per_problem']} responses."
           if r.get("truncated") else "")
    return [("h", f"Best-of-N: {path.name}"),
            ("p", ["Input ", Code(r["input"]), f": {r['n_problems']} problems × {r['samples_per_problem']} "
                   f"responses. Accuracy (%) over problems; {how}.{cut}"]),
            ("table", ["method", *(f"N={n}" for n in r["ns"])], rows), ("img", image, f"best-of-N plot {path.name}")]


def steps_blocks(path: Path, r: dict) -> list[tuple]:
    def row(name, t, m):
        return [name, "—" if t is None else f"{t:.4g}", pct(m["acc_err"]), pct(m["acc_ok"]),
                pct(m["f1"]), str(m["n_err"]), str(m["n_ok"])]

    rows, split = [], r.get("split")
    if r.get("tuned"):
        where = r["tune_on"] if r["threshold_from"] == "tune_on" else f"a random half (seed {split['seed']})"
        rows.append(row(f"tuned on {where}", r["threshold"], r["tuned"]))
    if r.get("evaluated"):
        on = "the other half" if split else "the input"
        rows.append(row(f"evaluated on {on} (threshold {r['threshold_from']})", r["threshold"], r["evaluated"]))
    if r.get("optimistic"):
        rows.append(row(r["optimistic"]["label"], r["optimistic"]["threshold"], r["optimistic"]))
    scale = "sigmoid(q-value)" if r["signal"] == "q_value" else "raw step reward"
    return [("h", f"Step errors (ProcessBench): {path.name}"),
            ("p", ["Input ", Code(r["input"]), f": {r['n']} solutions ({r['n_err']} with a wrong step, {r['n_ok']} "
                   f"all right). The first step with {scale} < threshold is predicted wrong. Accuracies and F1 in %; "
                   "only the evaluated row is a fair estimate, the optimistic one chose its threshold on the same "
                   "data."]),
            ("table", ["metrics", "threshold", "acc_err", "acc_ok", "F1", "n_err", "n_ok"], rows)]


def outcome_blocks(path: Path, r: dict) -> list[tuple]:
    rows = [[Code(m), fmt_auroc(v["auroc"]), pct(v["acc_at_0"]), pct(v["optimistic"]["acc"]),
             f"{v['optimistic']['threshold']:.4g}"] for m, v in r["methods"].items()]
    return [("h", f"Outcome: {path.name}"),
            ("p", ["Input ", Code(r["input"]), f": {r['n']} responses, {r['n_correct']} correct. AUROC of each "
                   "score at telling correct from incorrect responses; accuracy (%) of \"score > t predicts "
                   f"correct\" at t = 0 and at the best t. The best-t columns are {r['optimistic_label']}."]),
            ("table", ["method", "AUROC", "acc at 0", "best acc (optimistic)", "best t (optimistic)"], rows)]


# ---- solutions shaded by step reward -----------------------------------------------------------------------------

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
    return Solution(line, prompt, text, spans, rewards, q, correct, fe, scores)


def read_solutions(path: str | Path, score_key: str) -> list[Solution]:
    path = Path(path)
    cfg = config_path(path)  # score's saved config names the separator of pre-split steps
    sep = json.loads(cfg.read_text(encoding="utf-8")).get("step_separator", "\n\n") if cfg.is_file() else "\n\n"
    sols = [read_solution(path, line, rec, sep, score_key) for line, rec in read_json_records(path)]
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


def solution_html(i: int, s: Solution, scale: float, emoji: bool) -> str:
    """One solution as a single HTML block with inline styles (no blank lines, so Markdown keeps it whole)."""
    ok = {1: "✓ correct", 0: "✗ incorrect", None: "correctness unknown"}[s.correct]
    fe = {None: "unknown", -1: "none (all steps right)"}.get(s.first_error, f"step {s.first_error}")
    head = f"Solution {i} (line {s.line}) · {ok} · true first wrong step: {fe}" + "".join(
        f" · {m} = {x:.3f}" for m, x in s.scores.items())
    box = "margin:2px 0;padding:3px 6px;border-radius:3px;white-space:pre-wrap;"
    parts = ['<div style="border:1px solid #bbb;padding:6px;margin:1em 0">',
             f"<div><b>{html.escape(head)}</b></div>",
             f'<div style="{box}background:#f4f4f4"><i>Prompt:</i> {_text_html(s.prompt)}</div>']
    prev = 0
    for k, ((a, b), r, q) in enumerate(zip(s.spans, s.rewards, s.q_values)):
        if s.text[prev:a].strip():
            parts.append(f'<div style="{box}color:#777">{_text_html(s.text[prev:a])}</div>')
        wrong = k == s.first_error
        label = (f"{reward_emoji(r, scale) + ' ' if emoji else ''}step {k} · r = {r:+.3f} · "
                 f"σ(q) = {float(sigmoid(q)):.3f}" + (" · ✗ first wrong step" if wrong else ""))
        mark = "outline:3px solid #b00000;" if wrong else ""
        parts.append(f'<div style="{box}{mark}background:{reward_colour(r, scale)}">'
                     f'<span style="font-size:80%;color:#333"><b>[{html.escape(label)}]</b></span> '
                     f"{_text_html(s.text[a:b])}</div>")
        prev = b
    if s.text[prev:].strip():
        parts.append(f'<div style="{box}color:#777"><i>(not scored)</i> {_text_html(s.text[prev:])}</div>')
    return "\n".join(parts) + "\n</div>"


def solution_blocks(path: Path, chosen: list[Solution], emoji: bool) -> list[tuple]:
    scale = max((abs(r) for s in chosen for r in s.rewards), default=0.0)
    legend = (f"Each step's background runs from red (reward -{scale:.3g}, the most negative shown) through white "
              f"(0) to green (+{scale:.3g}); the label gives the step reward r and sigmoid(q-value). The true first "
              "wrong step, when known, is outlined and marked ✗.")
    if emoji:
        legend += f" Emoji: 🟥 r <= -m/2, 🟧 r <= -m/10, ⬜ |r| < m/10, 🟩 r >= m/10, with m = {scale:.3g}."
    return [("h", f"Solutions: {path.name}"), ("p", ["From ", Code(str(path)), f": {len(chosen)} solutions. {legend}"]),
            *(("raw", solution_html(i + 1, s, scale, emoji)) for i, s in enumerate(chosen))]


# ---- the command -------------------------------------------------------------------------------------------------

def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def make_report(cfg: ReportConfig) -> Path:
    """Read and check every input, draw any missing plot, then write the page and its config atomically."""
    out = Path(cfg.output)
    fmt = out.suffix.lower().lstrip(".")
    bons = [(Path(p), load_result(p, bon.SCHEMA, ("input", "ns", "methods", "score_methods", "subsets", "n_subsets",
                                                  "seed", "n_problems", "samples_per_problem"))) for p in cfg.bon]
    stepss = [(Path(p), load_result(p, steps.SCHEMA, ("input", "signal", "n", "n_err", "n_ok", "threshold_from",
                                                      "threshold", "tuned", "evaluated", "optimistic")))
              for p in cfg.steps]
    outcomes = [(Path(p), load_result(p, outcome.SCHEMA, ("input", "n", "n_correct", "methods", "optimistic_label")))
                for p in cfg.outcome]
    chosen = pick_solutions(read_solutions(cfg.scored, cfg.score_key), cfg.n_solutions) if cfg.scored else []

    blocks: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, r) in enumerate(bons):
            png = bon_plot_path(path)
            if png is None:  # draw it: beside the .md (it is linked), or in a temp dir (the HTML embeds it)
                png = out.with_name(f"{out.stem}.bon{i}.png") if fmt == "md" else Path(tmp) / f"bon{i}.png"
                bon.plot_bon(r, png, bon.plot_methods(r["score_methods"]))
            if fmt == "html":
                uri = _data_uri(png)
            else:
                rel = os.path.relpath(png.resolve(), out.resolve().parent)
                uri = urllib.parse.quote(Path(rel).as_posix())
            blocks += bon_blocks(path, r, uri)
    for path, r in stepss:
        blocks += steps_blocks(path, r)
    for path, r in outcomes:
        blocks += outcome_blocks(path, r)
    if chosen:
        blocks += solution_blocks(Path(cfg.scored), chosen, emoji=fmt == "md")

    write_result(out, render(blocks, fmt, cfg.title), cfg, write=write_text)
    print(f"[implicit-prm] wrote {out}")
    return out
