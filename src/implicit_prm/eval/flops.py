"""`implicit-prm flops`: sum FLOPs ledgers per method into a table, or `--paper`: the paper's analytic comparison."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import write_text
from ..core.results import write_result
from ..flops.ledger import NOTES, PHASES, read_ledger
from ..flops.paper import paper_comparison, paper_markdown

TABLE_SCHEMA = "implicit-prm/flops-table/v1"


@dataclass
class FlopsConfig:
    ledgers: list[str] = field([], help="ledger files (flops.json, <output>.flops.json); each counts toward the "
                                        "method named in its own 'method' field")
    method: list[str] = field([], help="NAME=LEDGER[,LEDGER...] assignments, all after one --method (a second "
                                       "--method replaces the first): e.g. --method implicit_ce=data.flops.json,"
                                       "run/flops.json math_shepherd=ms.flops.json; overrides a ledger's own "
                                       "'method'")
    baseline: Optional[str] = field(None, help="the method every ratio is relative to (default: the first method)")
    output: Optional[str] = field(None, help="write the table as JSON to this file and as Markdown beside it "
                                             "(F.json -> F.md)")
    paper: bool = field(False, help="instead of ledgers, recompute the paper's FLOPs comparison (Yuan et al. 2024) "
                                    "analytically, with its assumptions and a sensitivity table")


def assign_methods(ledgers: list[str], method: list[str]) -> dict[str, list[Path]]:
    """{method: [ledger paths]} in order of first mention: --method assignments first, then --ledgers by their
    own 'method' field. A ledger given twice or without a method is a ConfigError."""
    out: dict[str, list[Path]] = {}
    seen: dict[Path, str] = {}

    def put(name: str, path: Path) -> None:
        key = path.resolve()
        if key in seen:
            raise ConfigError(f"ledger {path} is given twice (for {seen[key]!r} and {name!r}); count it once")
        seen[key] = name
        out.setdefault(name, []).append(path)

    for item in method:
        name, eq, paths = item.partition("=")
        if not eq or not name or not paths.strip(","):
            raise ConfigError(f"field 'method': expected NAME=LEDGER[,LEDGER...], got {item!r}")
        for p in paths.split(","):
            if p:
                put(name, Path(p))
    for p in map(Path, ledgers):
        if p.resolve() in seen:  # also assigned by --method, which overrides
            continue
        name = read_ledger(p).method
        if not name:
            raise InputError(p, None, "method", "this ledger names no method: assign it with --method NAME=" + str(p))
        put(name, p)
    return out


def method_table(assigned: dict[str, list[Path]], baseline: str | None = None) -> dict:
    """Per method: the FLOPs of each phase summed over its ledgers, the total and its ratio to the baseline's."""
    if not assigned:
        raise ConfigError("no ledgers: give --ledgers and/or --method NAME=LEDGER (or --paper)")
    baseline = baseline or next(iter(assigned))
    if baseline not in assigned:
        raise ConfigError(f"field 'baseline': {baseline!r} is not one of the methods {list(assigned)}")
    methods = {}
    for name, paths in assigned.items():
        phases = dict.fromkeys(PHASES, 0)
        for p in paths:
            for phase, f in read_ledger(p).by_phase().items():
                phases[phase] += f
        methods[name] = {"ledgers": [str(p) for p in paths], "flops": phases, "total": sum(phases.values())}
    base = methods[baseline]["total"]
    for m in methods.values():
        m["ratio"] = m["total"] / base if base else None
    return {"schema": TABLE_SCHEMA, "baseline": baseline, "phases": PHASES, "methods": methods, "notes": NOTES}


def markdown_table(table: dict) -> str:
    head = ["method", *table["phases"].values(), "total", f"x {table['baseline']}"]
    rows = [[name, *(f"{m['flops'][p]:.3g}" for p in table["phases"]), f"{m['total']:.3g}",
             "-" if m["ratio"] is None else f"{m['ratio']:.2f}"] for name, m in table["methods"].items()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "FLOPs by method and phase\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in table["notes"])


def flops(cfg: FlopsConfig) -> dict:
    """`implicit-prm flops`: the per-method table of the given ledgers, or (--paper) the paper's comparison."""

    if cfg.paper:
        if cfg.ledgers or cfg.method:
            raise ConfigError("--paper recomputes the paper's setting: give it without --ledgers/--method")

        result = paper_comparison()
        text = paper_markdown(result)
    else:
        result = method_table(assign_methods(cfg.ledgers, cfg.method), cfg.baseline)
        text = markdown_table(result)
    print(text)
    if cfg.output:
        out = Path(cfg.output)
        write_result(out, result, cfg)
        write_text(out.with_suffix(".md") if out.suffix == ".json" else out.with_name(out.name + ".md"), text + "\n")
    return result
