"""The package's layering: every module's imports (those inside functions too) point down the pipeline, never up,
and no import cycle exists. The layer order is declared here, once; a new top-level module or subpackage must be
given a layer before this test passes."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "implicit_prm"

# Lowest first. A module may import its own layer and the layers below it; within a layer, the modules of one
# package import each other freely (cycles aside); two packages that share a layer do not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("core",),                # config, errors, io, validation, resume, precision, distributed setup
    ("rewards", "losses"),    # pure maths: token/step rewards, q-values, aggregation; the objectives
    ("flops",),               # FLOPs counting and the ledger (the `flops` verb lives in eval)
    ("data",),                # input formats, benchmarks, grading, the built-in problems and solver
    ("models",),              # loading, metadata, chat template, generation, log-probs, heads
    ("steps",),               # splitting, encoding, step tags, length batching
    ("scoring",),             # the Scorer protocol, the forward loop, caches, the reference pass, every scorer
    ("training",),            # config, examples, the loop, its log, checkpoints
    ("collect",),             # rollouts, graded data, Monte-Carlo and AutoPSV step labels, the built-in data verb
    ("eval",),                # metrics, best-of-N, steps, outcome, benchmarks, report, the FLOPs table
    ("search", "serve", "rl"),  # step-level search; the reward server; PRIME (implicit rewards inside RL)
    ("demo",),                # the main job: data -> train -> score -> evaluate
    ("cli", "__init__"),      # the verb table; the public API
    ("__main__",),
]


def layer_of(module: str) -> int:
    """The layer index of a dotted module name under implicit_prm ('' is the package's __init__)."""
    head = module.split(".")[0] if module else "__init__"
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"implicit_prm.{module}: no layer declared for {head!r} (add it to LAYERS in {__file__})")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every implicit_prm module that `module` imports, at any depth of its code, relative or absolute."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if module else []
                base = base if is_pkg else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module + ".").startswith("implicit_prm."):
                target = node.module[len("implicit_prm."):] if node.module != "implicit_prm" else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("implicit_prm."):] for a in node.names if a.name.startswith("implicit_prm.")}
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: {d for d in imports(m, p, known) if d in known} for m, p in mods.items()}


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def violations(g: dict[str, set[str]]) -> list[str]:
    """Every import of `g` that points to a higher layer, or across to another package of the same layer."""
    bad = []
    for module, deps in g.items():
        mine = layer_of(module)
        for dep in deps:
            theirs = layer_of(dep)
            same_package = dep.split(".")[0] == module.split(".")[0]
            if theirs > mine or (theirs == mine and not same_package):
                bad.append(f"implicit_prm.{module or '__init__'} (layer {mine}) imports implicit_prm.{dep} "
                           f"(layer {theirs})")
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[str]:
    """The import cycles of `g`, each as a -> b -> ... -> a (depth-first search)."""
    state: dict[str, int] = {}
    found = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                found.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return found


def test_no_import_points_up_or_across():
    bad = violations(graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_checks_catch_what_they_forbid():
    # a lazy import of evaluation from data collection, a cycle inside data, a search <-> serve import
    g = {"collect.rollout": {"eval.bon"}, "data.formats": {"data.step_formats"}, "data.step_formats": {"data.formats"},
         "serve.app": {"search.run"}, "eval.bon": {"core.io"}, "data": {"data.formats"}}
    assert violations(g) == [
        "implicit_prm.collect.rollout (layer 8) imports implicit_prm.eval.bon (layer 9)",
        "implicit_prm.serve.app (layer 10) imports implicit_prm.search.run (layer 10)"]
    assert cycles(g) == ["data.formats -> data.step_formats -> data.formats"]


@pytest.mark.parametrize("source, expected", [
    ("from ..core.io import x\n", {"core.io"}),
    ("def f():\n    from ..eval import bon\n", {"eval.bon"}),
    ("import implicit_prm.models.loading as m\n", {"models.loading"}),
])
def test_imports_are_found_inside_functions_and_in_every_form(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert imports("scoring.mod", path, {"core.io", "eval.bon", "eval", "models.loading"}) == expected


def test_a_top_level_stays_small():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 8, f"{len(top)} modules at the top of the package: {sorted(top)}"
