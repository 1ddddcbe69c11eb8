"""One Markdown or self-contained HTML page from the eval outputs: best-of-N, step-error and outcome tables, plots,
and single solutions with each step shaded by its reward.

Sections, in this order, one per input file (a bootstrap interval "[lo, hi]" follows each figure that has one,
with a note naming its level and resample count; results written without intervals show none):
  best-of-N   methods x N accuracy (%), ± the std over random subsets, and which score methods have no raw-sum
              vote and why (bon.raw_vote_note); the PNG plot that `eval bon` wrote (the path
              in its `<json>.config.json`, else `<stem>.bon.png` beside `<stem>.bon.json`), made with bon.plot_bon
              if missing
  step errors ProcessBench acc_err / acc_ok / F1 (%): the tuned, evaluated and optimistic rows, each labelled
  outcome     AUROC, accuracy (%) at score > 0, and the optimistic best-threshold accuracy
  solutions   `n_solutions` responses from a scored file: the prompt, then every step on a background from red
              (the most negative step reward shown, -m) through white (0) to green (+m), labelled with the step
              reward r and sigmoid(q-value); the true first wrong step (`first_error`, or ProcessBench `label` on
              pre-split records) is outlined and marked "✗ first wrong step".
  errors      from the same file, the problems whose top-1 pick by score_key is wrong: the mistakes by error_kind,
              the wrong picks' scores against the correct responses' scores, and up to `n_errors` wrong picks beside
              their problem's best correct response (implicit_prm.eval.error_analysis)
Which solutions: half (rounded up) incorrect and the rest correct (correctness as in `eval outcome`; without it, a
known first wrong step >= 0 counts as incorrect and -1 as correct), filled from the other group and then the unknown
ones when a group runs short. Within a group, records with a known first wrong step come first, then one per prompt
before a prompt repeats, each in file order; the chosen ones are shown in file order.

Formats: .html is one file (inline CSS, plots as base64 data URIs). .md links the plots by relative path (a missing
plot is drawn beside the .md as <md stem>.bon<i>.png, the error analysis's as <md stem>.errors.png) and shows the
solutions as HTML blocks with inline styles (VS Code, pandoc and most viewers shade them). GitHub strips `style`
attributes, so in Markdown each step label also starts with an emoji square from the same scale: 🟥 r <= -m/2,
🟧 r <= -m/10, ⬜ |r| < m/10, 🟩 r >= m/10. All model text is HTML-escaped. The page is written atomically, after
every input has been read and checked.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import write_text
from ..core.results import config_path, write_result
from ..core.validation import describe_json
from . import bon, error_analysis, outcome, steps
from .metrics import CI_LEVEL, fmt_auroc, fmt_ci, pct
from .solutions import Code, Solution, pick_solutions, read_solutions, solution_html


@dataclass
class ReportConfig:
    output: str = field(help="the report: .md (Markdown, plots linked) or .html (one self-contained file)")
    bon: list[str] = field([], help="best-of-N results (JSON from `implicit-prm eval bon`)")
    steps: list[str] = field([], help="step-error results (JSON from `implicit-prm eval steps`)")
    outcome: list[str] = field([], help="outcome results (JSON from `implicit-prm eval outcome`)")
    scored: Optional[str] = field(None, help="scored JSONL (from `implicit-prm score`) for the solutions shaded step "
                                             "by step and the error analysis of the top-1 picks")
    n_solutions: int = field(6, help="solutions to show from --scored")
    score_key: str = field("min", help="score shown per solution and ranking the error analysis's top-1 picks: an "
                                       "aggregation ('min') or a method ('prm.min')")
    n_errors: int = field(5, help="problems whose top-1 pick is wrong to show beside their best correct "
                                  "response (0: tables and plot only)")
    title: str = field("implicit-prm report", help="page title")

    def __post_init__(self):
        if Path(self.output).suffix.lower() not in (".md", ".html"):
            raise ConfigError(f"field 'output' must end in .md or .html, got {self.output!r}")
        for name in ("n_solutions", "n_errors"):
            if getattr(self, name) < 0:
                raise ConfigError(f"field '{name}' must be >= 0, got {getattr(self, name)}")
        if not (self.bon or self.steps or self.outcome or self.scored):
            raise ConfigError("nothing to report: give at least one of bon, steps, outcome, scored")


# ---- page blocks, rendered to HTML or Markdown -------------------------------------------------------------------



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


def with_ci(text: str, ci, scale: float = 100.0, digits: int = 1) -> str:
    """A table cell "61.5 [52.1, 70.3]": the figure and its bootstrap interval ("[n/a]" when undefined)."""
    got = fmt_ci(ci and [None if x is None else round(x, 12) + 0.0 for x in ci], scale, digits)  # no "-0.0"
    return f"{text} {'[n/a]' if got == 'n/a' else got}"


def ci_note(r: dict, over: str) -> tuple:
    return ("p", [f"[lo, hi]: {100 * r.get('ci_level', CI_LEVEL):g}% percentile bootstrap interval over {over} "
                  f"({r.get('n_bootstrap')} resamples)."])


def bon_blocks(path: Path, r: dict, image: str) -> list[tuple]:
    std = r["subsets"] == "random"
    how = (f"mean ± std over {r['n_subsets']} random subsets per problem (seed {r['seed']})" if std
           else "the first N responses of each problem")
    has_ci = any(v.get("ci") for v in r["methods"].values())  # older results, or n_bootstrap = 0: none

    def cell(a, s, ci):
        text = f"{100 * a:.1f}" + (f" ± {100 * s:.1f}" if std else "")
        return with_ci(text, ci) if has_ci else text

    rows = [[Code(m), *map(cell, v["acc"], v["std"], v.get("ci") or [None] * len(v["acc"]))]
            for m, v in r["methods"].items()]
    cut = (f" Ragged input: every problem cut to its first {r['truncated']['samples_per_problem']} responses."
           if r.get("truncated") else "")
    raw = bon.raw_vote_note(r)  # which methods have no raw-sum vote, and why
    return [("h", f"Best-of-N: {path.name}"),
            ("p", ["Input ", Code(r["input"]), f": {r['n_problems']} problems × {r['samples_per_problem']} "
                   f"responses. Accuracy (%) over problems; {how}.{cut}"]),
            ("table", ["method", *(f"N={n}" for n in r["ns"])], rows),
            *([ci_note(r, f"the {r['n_problems']} problems")] if has_ci else []),
            *([("p", [f"{raw}."])] if raw else []),
            ("img", image, f"best-of-N plot {path.name}")]


def steps_blocks(path: Path, r: dict) -> list[tuple]:
    def row(name, t, m):
        ci = m.get("ci")  # the evaluated row's, when the result has intervals
        return [name, "—" if t is None else f"{t:.4g}",
                *(with_ci(pct(m[k]), ci.get(k)) if ci else pct(m[k]) for k in ("acc_err", "acc_ok", "f1")),
                str(m["n_err"]), str(m["n_ok"])]

    rows, split = [], r.get("split")
    if r.get("tuned"):
        where = r["tune_on"] if r["threshold_from"] == "tune_on" else f"a random half (seed {split['seed']})"
        rows.append(row(f"tuned on {where}", r["threshold"], r["tuned"]))
    if r.get("evaluated"):
        on = "the other half" if split else "the input"
        rows.append(row(f"evaluated on {on} (threshold {r['threshold_from']})", r["threshold"], r["evaluated"]))
    if r.get("optimistic"):
        rows.append(row(r["optimistic"]["label"], r["optimistic"]["threshold"], r["optimistic"]))
    if r["signal"] != "q_value":
        scale = "raw step reward"
    elif r.get("scales") == ["probability"]:
        scale = "the scorer's P(+) (q-value)"
    else:
        scale = "sigmoid(q-value)"
    return [("h", f"Step errors (ProcessBench): {path.name}"),
            ("p", ["Input ", Code(r["input"]), f": {r['n']} solutions ({r['n_err']} with a wrong step, {r['n_ok']} "
                   f"all right). The first step with {scale} < threshold is predicted wrong. Accuracies and F1 in %; "
                   "only the evaluated row is a fair estimate, the optimistic one chose its threshold on the same "
                   "data."]),
            ("table", ["metrics", "threshold", "acc_err", "acc_ok", "F1", "n_err", "n_ok"], rows),
            *([ci_note(r, f"the {ev['n_err'] + ev['n_ok']} evaluated solutions, threshold fixed")]
              if (ev := r.get("evaluated") or {}).get("ci") else [])]


def outcome_blocks(path: Path, r: dict) -> list[tuple]:
    has_ci = any(v.get("ci") for v in r["methods"].values())

    def scored(v):  # AUROC and accuracy at 0, with their intervals when the result has them
        auc, acc, ci = fmt_auroc(v["auroc"]), pct(v["acc_at_0"]), v.get("ci") or {}
        return [with_ci(auc, ci.get("auroc"), 1.0, 3), with_ci(acc, ci.get("acc_at_0"))] if has_ci else [auc, acc]

    rows = [[Code(m), *scored(v), pct(v["optimistic"]["acc"]), f"{v['optimistic']['threshold']:.4g}"]
            for m, v in r["methods"].items()]
    return [("h", f"Outcome: {path.name}"),
            ("p", ["Input ", Code(r["input"]), f": {r['n']} responses, {r['n_correct']} correct. AUROC of each "
                   "score at telling correct from incorrect responses; accuracy (%) of \"score > t predicts "
                   f"correct\" at t = 0 and at the best t. The best-t columns are {r['optimistic_label']}."]),
            ("table", ["method", "AUROC", "acc at 0", "best acc (optimistic)", "best t (optimistic)"], rows),
            *([ci_note(r, f"the {r.get('n_units', '?')} {r.get('ci_unit', 'unit')}s")] if has_ci else [])]


# ---- solutions shaded by step reward -----------------------------------------------------------------------------

def solution_blocks(path: Path, chosen: list[Solution], emoji: bool) -> list[tuple]:
    scale = max((abs(r) for s in chosen for r in s.rewards), default=0.0)
    if chosen and all(s.probability for s in chosen):  # a step-tag scorer: P(+) per step
        scale = 1.0
        legend = ("Each step's background runs from red (P(+) = 0) through white (1/2) to green (1); the label gives "
                  "the step's P(+) from the step-tag scorer. The true first wrong step, when known, is outlined and "
                  "marked ✗.")
    else:
        legend = (f"Each step's background runs from red (reward -{scale:.3g}, the most negative shown) through "
                  f"white (0) to green (+{scale:.3g}); the label gives the step reward r and sigmoid(q-value). The "
                  "true first wrong step, when known, is outlined and marked ✗.")
    if emoji:
        legend += f" Emoji: 🟥 r <= -m/2, 🟧 r <= -m/10, ⬜ |r| < m/10, 🟩 r >= m/10, with m = {scale:.3g}."
    return [("h", f"Solutions: {path.name}"), ("p", ["From ", Code(str(path)), f": {len(chosen)} solutions. {legend}"]),
            *(("raw", solution_html(i + 1, s, scale, emoji)) for i, s in enumerate(chosen))]


# ---- the command -------------------------------------------------------------------------------------------------

def image_uri(png: Path, out: Path) -> str:
    """How the page at `out` shows a PNG: a base64 data URI in HTML, the relative path (URL-quoted) in Markdown."""
    if out.suffix.lower() == ".html":
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    return urllib.parse.quote(Path(os.path.relpath(png.resolve(), out.resolve().parent)).as_posix())


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
    sols = read_solutions(cfg.scored, cfg.score_key) if cfg.scored else []
    analysis = error_analysis.analyse(sols) if sols else None

    blocks: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:  # plots drawn for the HTML page, which embeds them
        for i, (path, r) in enumerate(bons):
            png = bon_plot_path(path)
            if png is None:  # draw it: beside the .md (it is linked), or in the temp dir
                png = out.with_name(f"{out.stem}.bon{i}.png") if fmt == "md" else Path(tmp) / f"bon{i}.png"
                bon.plot_bon(r, png, bon.plot_methods(r["score_methods"]))
            blocks += bon_blocks(path, r, image_uri(png, out))
        for path, r in stepss:
            blocks += steps_blocks(path, r)
        for path, r in outcomes:
            blocks += outcome_blocks(path, r)
        chosen = pick_solutions(sols, cfg.n_solutions)
        if chosen:
            blocks += solution_blocks(Path(cfg.scored), chosen, emoji=fmt == "md")
        if analysis is not None:
            png = out.with_name(f"{out.stem}.errors.png") if fmt == "md" else Path(tmp) / "errors.png"
            image = image_uri(png, out) if error_analysis.plot_scores(analysis, png) else None
            blocks += error_analysis.error_blocks(Path(cfg.scored), analysis, cfg.n_errors, fmt == "md", image)

    write_result(out, render(blocks, fmt, cfg.title), cfg, write=write_text)
    print(f"[implicit-prm] wrote {out}")
    return out
