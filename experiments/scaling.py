"""How much outcome data does an implicit PRM need? The paper's data-scaling figures over a wider range.

What it reproduces (Yuan et al. 2024, arXiv 2412.01981, Figures 5 and 6): CE on P problems x k responses per
problem, P in 100, 200, 400, 800 and k in 1, 2, 4 (100 to 3,200 training responses); DPO at the largest point; a
second seed (a fresh draw of the training pool) at the two largest points, 400 x 4 and 800 x 4. Every training
set of one seed is a nested subset of one pool of simulated solver rollouts (`P x k` is the first k responses of
the first P problems), so the reference log-probs of a response are computed once (the log-prob cache) however
many points train on it.

Splits, each from its own seed used nowhere else: pools 8101 (seed 1) and 8102 (seed 2), 800 problems x 4; dev
8103, 40 problems x 8, where the step-error threshold is chosen; test 8104, 100 problems x 16. The recipe is the
demo's (LoRA r=16, lr 1e-4, beta 0.5, one epoch, batch 8, empty system prompt, max length 512), fixed before any
point was run: nothing here is tuned on the test split.

Per point, on the test split: AUROC of the min step reward (pooled, with a percentile bootstrap interval over
problems), the mean within-problem AUROC (problems holding both right and wrong responses; bootstrap over them),
step-error F1 at the dev-chosen threshold, best-of-16 top-1 by min and min-weighted majority against majority
voting (bootstrap intervals over problems), and the training time.

Usage:  python experiments/scaling.py [--out runs/scaling] [--results experiments/results] [--max-points N]
Resumable across sessions: a finished point's metrics are written to <results>/scaling/<point>.json (commit
them); a re-run skips those, regenerates the pools from their seeds and resumes a killed training from its last
checkpoint under --out. --max-points stops after that many new points. --quick is a minutes-long smoke run
(tiny splits, its own results folder). Writes <results>/scaling.json, scaling.md and scaling_*.png from every
finished point.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
from error_kinds import error_kinds  # experiments/, beside this file

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.distributed import default_device
from implicit_prm.core.io import read_json_file, read_json_records, write_json, write_jsonl, write_text
from implicit_prm.core.precision import resolve_precision
from implicit_prm.core.results import machine
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.eval.bon import BonConfig, run_bon
from implicit_prm.eval.metrics import bootstrap_mean_ci
from implicit_prm.eval.outcome import OutcomeConfig, read_outcome_units, run_outcome
from implicit_prm.eval.scored import merge_scored, score_once
from implicit_prm.eval.steps import StepsConfig, run_steps
from implicit_prm.models.loading import DEFAULT_MODEL
from implicit_prm.rewards import auroc
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

BETA, LR = 0.5, 1e-4
SEEDS = {"pool1": 8101, "pool2": 8102, "dev": 8103, "test": 8104}
FULL = {"pool": (800, 4), "dev": (40, 8), "test": (100, 16), "problems": [100, 200, 400, 800], "ks": [1, 2, 4]}
QUICK = {"pool": (8, 2), "dev": (4, 4), "test": (6, 4), "problems": [4, 8], "ks": [1, 2]}


def points(grid: dict) -> list[tuple[str, int, int, int]]:
    """(objective, problems, responses per problem, pool seed) for every point, smallest training sets first."""
    ce = sorted(((p, k) for p in grid["problems"] for k in grid["ks"]), key=lambda pk: (pk[0] * pk[1], pk[1]))
    top, second = grid["problems"][-1], grid["problems"][-2]
    k = grid["ks"][-1]
    return ([("ce", p, kk, 1) for p, kk in ce] + [("dpo", top, k, 1)] +
            [("ce", second, k, 2), ("ce", top, k, 2)])


def point_name(objective: str, problems: int, k: int, seed: int) -> str:
    return f"{objective}_p{problems}_k{k}_s{seed}"


def split_file(out: Path, name: str, shape: tuple[int, int], seed: int) -> Path:
    """A split of simulated solver rollouts (not balanced: some problems all right or all wrong), written once."""
    path = out / f"{name}.jsonl"
    if not path.exists():
        write_builtin(BuiltinDataConfig(output=str(path), n_problems=shape[0], samples_per_problem=shape[1],
                                        balance=False, seed=seed))
    return path


def subset(pool: list[dict], problems: int, k: int) -> list[dict]:
    return [{**r, "completions": r["completions"][:k], "correctness": r["correctness"][:k]} for r in pool[:problems]]


def within_problem_auroc(path: Path, method: str, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Mean over problems holding both labels of the AUROC of `method` among that problem's responses (how well
    the PRM ranks candidates of one problem, which best-of-N needs), and its bootstrap interval over them."""
    labels, scores, methods, units = read_outcome_units(path)
    col = scores[:, methods.index(method)]
    vals = np.array([v for u in np.unique(units)
                     if (v := auroc(col[units == u].tolist(), labels[units == u].tolist())) is not None])
    if len(vals) == 0:
        return {"mean": None, "ci": None, "n_problems": 0}
    lo, hi = bootstrap_mean_ci(vals, n_bootstrap, seed)
    return {"mean": float(vals.mean()), "ci": [float(lo), float(hi)], "n_problems": int(len(vals))}


def train_point(out: Path, pool: list[dict], point: tuple, model: str, quick: bool) -> tuple[Path, float, int]:
    """Train one point (a killed run resumes from its last checkpoint): (PRM dir, training seconds, steps)."""
    objective, problems, k, seed = point
    name = point_name(*point)
    data = out / f"train_{name}.jsonl"
    if not data.exists():
        write_jsonl(data, subset(pool, problems, k))
    prm = train(TrainConfig(data=str(data), output=str(out / name / "prm"), model=model, objective=objective,
                            lr=LR, beta=BETA, lora=True, system_prompt="", max_length=512,
                            batch_size=2 if quick else 8, checkpoint_every=10, seed=seed,
                            max_pairs_per_prompt=2 if objective == "dpo" else None, progress=not quick))
    log = [rec for _, rec in read_json_records(Path(prm) / "train_log.jsonl")]
    return Path(prm), train_seconds(log), len(log)


def train_seconds(log: list[dict]) -> float:
    """The training time of a log. Logs written before the trainer carried its clock across a resume restart
    `elapsed_s` at the resumed step: each restart adds the time before it."""
    total, prev = 0.0, 0.0
    for rec in log:
        if rec["elapsed_s"] < prev:
            total += prev
        prev = rec["elapsed_s"]
    return total + prev


def evaluate_point(out: Path, prm: Path, name: str, dev: Path, test: Path, test_k: int) -> dict:
    """The point's test metrics (the step threshold chosen on dev)."""
    run_dir = out / name
    scored = {split: score_once(str(prm), path, run_dir / f"{split}.jsonl", progress=False)
              for split, path in (("dev", dev), ("test", test))}
    merged = merge_scored({name: scored["test"]}, run_dir / "test.merged.jsonl")
    outcome = run_outcome(OutcomeConfig(input=str(scored["test"]), n_bootstrap=1000))["methods"]["prm.min"]
    steps = run_steps(StepsConfig(input=str(scored["test"]), tune_on=str(scored["dev"])))
    return {**bon_metrics(merged, name, test_k),
            "auroc_min": {"value": outcome["auroc"], "ci": outcome["ci"]["auroc"] if outcome.get("ci") else None},
            "auroc_within_problem_min": within_problem_auroc(scored["test"], "prm.min"),
            "error_kinds": error_kinds(scored["test"]),
            "step_error": {"threshold_from_dev": steps["threshold"], **steps["evaluated"]}}


def bon_metrics(merged: Path, name: str, test_k: int) -> dict:
    """Best-of-N accuracies per N with bootstrap intervals; the PRM's top-1 and weighted vote also paired against
    majority voting (the difference per problem, bootstrapped over the same resamples)."""
    bon = run_bon(BonConfig(input=str(merged), ns=[n for n in (1, 2, 4, 8, 16) if n <= test_k], seed=0,
                            n_bootstrap=1000))["methods"]
    pick = {"top1_min": f"{name}.min", "weighted_majority_min": f"weighted_majority.{name}.min",
            "majority": "majority", "random": "random", "pass_at_n": "pass@N"}
    return {key: {"acc": bon[m]["acc"], "ci": bon[m]["ci"],
                  **({"minus_majority": bon[m]["minus_majority"]} if key != "majority" else {})}
            for key, m in pick.items()}


def backfill(out: Path, res: Path, grid: dict) -> None:
    """Add the paired difference with majority voting and the error-kind breakdown to points finished before they
    were measured, from their scored test files under --out (points whose files are gone stay without them), and
    correct the training time of points resumed before the trainer's clock carried across a resume."""
    for p in points(grid):
        name = point_name(*p)
        path, scored, merged = res / f"{name}.json", out / name / "test.jsonl", out / name / "test.merged.jsonl"
        if not path.exists() or not merged.exists() or not scored.exists():
            continue
        log = out / name / "prm" / "train_log.jsonl"
        rec = read_json_file(path)
        old = dict(rec["test"]), rec["train_s"]
        if log.exists():
            rec["train_s"] = round(train_seconds([r for _, r in read_json_records(log)]), 1)
        if "minus_majority" not in rec["test"]["top1_min"] or "error_kinds" not in rec["test"]:
            rec["test"].update(bon_metrics(merged, name, grid["test"][1]))
            rec["test"]["error_kinds"] = error_kinds(scored)
        if (rec["test"], rec["train_s"]) != old:
            write_json(path, rec)


def run_point(out: Path, res: Path, pools: dict, dev: Path, test: Path, point: tuple, args, grid: dict) -> dict:
    name = point_name(*point)
    prm, train_s, steps = train_point(out, pools[point[3]], point, args.model, args.quick)
    t0 = time.time()
    metrics = evaluate_point(out, prm, name, dev, test, grid["test"][1])
    labels = [c for r in subset(pools[point[3]], point[1], point[2]) for c in r["correctness"]]
    rec = {"objective": point[0], "problems": point[1], "responses_per_problem": point[2], "pool_seed": point[3],
           "train_responses": len(labels), "train_correct": int(sum(labels)), "steps": steps,
           "train_s": round(train_s, 1), "score_s": round(time.time() - t0, 1), "test": metrics,
           "date": datetime.date.today().isoformat(), "machine": machine(),
           "precision": resolve_precision(default_device(), "auto")}
    write_json(res / f"{name}.json", rec)
    m = metrics
    print(f"[scaling] {name}: AUROC(min) {m['auroc_min']['value']:.3f}, top-1@{grid['test'][1]} "
          f"{100 * m['top1_min']['acc'][-1]:.1f} vs majority {100 * m['majority']['acc'][-1]:.1f}, "
          f"train {train_s:.0f} s", flush=True)
    return rec


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/scaling")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--max-points", type=int, default=None, help="stop after this many new points")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    grid = QUICK if args.quick else FULL
    out = Path(args.out + ("_quick" if args.quick else ""))
    res = Path(args.results) / ("scaling_quick" if args.quick else "scaling")
    out.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    t_start, new = time.time(), 0
    pools = {s: [rec for _, rec in read_json_records(split_file(out, f"pool{s}", grid["pool"], SEEDS[f"pool{s}"]))]
             for s in (1, 2)}
    dev = split_file(out, "dev", grid["dev"], SEEDS["dev"])
    test = split_file(out, "test", grid["test"], SEEDS["test"])
    backfill(out, res, grid)
    for point in points(grid):
        if (res / f"{point_name(*point)}.json").exists():
            continue
        if args.max_points is not None and new >= args.max_points:
            break
        run_point(out, res, pools, dev, test, point, args, grid)
        new += 1
        summarize(res, grid, time.time() - t_start, args.quick, show=False)  # a kill leaves an up-to-date summary
    summarize(res, grid, time.time() - t_start, args.quick)


def summarize(res: Path, grid: dict, wall_s: float, quick: bool, show: bool = True) -> None:
    """scaling.json, .md and the plots from every finished point (partial until the last one has run)."""
    done = {point_name(*p): read_json_file(res / f"{point_name(*p)}.json") for p in points(grid)
            if (res / f"{point_name(*p)}.json").exists()}
    result = {"schema": "implicit-prm/scaling/v1",
              "command": "python experiments/scaling.py" + (" --quick" if quick else ""),
              "grid": grid, "seeds": SEEDS, "points_done": len(done), "points_total": len(points(grid)),
              "train_s_total": round(sum(r["train_s"] for r in done.values()), 1),
              "score_s_total": round(sum(r["score_s"] for r in done.values()), 1),
              "wall_s_last_invocation": round(wall_s, 1), "trend": trend(done), "points": done}
    base = res.parent / res.name
    write_json(base.with_suffix(".json"), result)
    write_text(base.with_suffix(".md"), table(result))
    if done:
        plots(result, base)
    if show:
        print(table(result))


TARGETS = {"auroc_min": 0.80, "top1_minus_majority": 0.0, "weighted_majority_minus_majority": 0.03}


def _trend_values(t: dict) -> dict:
    """The trend's metrics of one point's test results (differences at the largest N; None where not measured)."""
    diff = {k: t[key].get("minus_majority", {}).get("diff", [None])[-1]
            for k, key in (("top1_minus_majority", "top1_min"),
                           ("weighted_majority_minus_majority", "weighted_majority_min"))}
    return {"auroc_min": t["auroc_min"]["value"], **diff}


def trend(done: dict) -> dict:
    """Least-squares line of each metric against log2(training responses) over the CE seed-1 points, its slope per
    doubling, and the training size where the line reaches the research goal's target (None: flat, falling or
    past 2^60; only "points" and "target" with fewer than 3 points). An extrapolation from a few noisy points: a
    hint of the distance, not a forecast."""
    ce = [p for p in done.values() if p["objective"] == "ce" and p["pool_seed"] == 1]
    out = {}
    for metric, target in TARGETS.items():
        xy = [(np.log2(p["train_responses"]), _trend_values(p["test"])[metric]) for p in ce]
        xy = [(x, y) for x, y in xy if y is not None]
        if len(xy) < 3 or len({x for x, _ in xy}) < 2:
            out[metric] = {"points": len(xy), "target": target}
            continue
        slope, icpt = np.polyfit([x for x, _ in xy], [y for _, y in xy], 1)
        exponent = (target - icpt) / slope if slope > 1e-9 else None
        reach = 2.0 ** exponent if exponent is not None and exponent < 60 else None  # past 2^60: never, in effect
        out[metric] = {"points": len(xy), "target": target, "slope_per_doubling": float(slope),
                       "at_3200": float(icpt + slope * np.log2(3200)),
                       "responses_to_target": None if reach is None else float(reach)}
    return out


def trend_lines(tr: dict) -> str:
    rows = ["\nTrend (CE seed 1; a line against log2 of the training responses):\n"]
    for metric, t in tr.items():
        if "slope_per_doubling" not in t:
            rows.append(f"- {metric}: {t['points']} points, too few for a line\n")
            continue
        reach = t["responses_to_target"]
        where = ("not on this line (flat, falling, or past 2^60)" if reach is None else
                 f"at about {reach:,.0f} training responses" if reach < 1e7 else f"at about {reach:.1e} training responses")
        where += " (inside the grid)" if reach is not None and reach <= 3200 else ""
        rows.append(f"- {metric}: {t['slope_per_doubling']:+.4f} per doubling over {t['points']} points, "
                    f"{t['at_3200']:.3f} at 3,200 on the line; target {t['target']:g} reached {where}\n")
    return "".join(rows)


def _ci(x: dict, scale: float = 100.0) -> str:
    v, ci = x.get("value", x.get("mean")), x.get("ci")
    if v is None:
        return "-"
    digits = 3 if scale == 1 else 1
    s = f"{scale * v:.{digits}f}"
    return s + (f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]" if ci else "")


def _last(x: dict) -> dict:
    """The N = 16 (last N) entry of a best-of-N metric, as {value, ci}."""
    return {"value": x["acc"][-1], "ci": x["ci"][-1] if x.get("ci") else None}


def table(r: dict) -> str:
    n = r["grid"]["test"][1]
    out = [f"{r['points_done']} of {r['points_total']} points. Test: {r['grid']['test'][0]} problems x {n}. "
           "Intervals: 95% percentile bootstrap over test problems. Step F1 at the threshold chosen on dev.\n\n",
           f"| point | responses | AUROC(min) | within-problem AUROC | step F1 | top-1@{n} | weighted maj@{n} | "
           f"majority@{n} | top-1 - maj | w. maj - maj | train s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"]
    for name, p in sorted(r["points"].items(), key=lambda kv: (kv[1]["pool_seed"], kv[1]["objective"] != "ce",
                                                                kv[1]["train_responses"], kv[1]["problems"])):
        t = p["test"]
        out.append(f"| {name} | {p['train_responses']} | {_ci(t['auroc_min'], 1)} | "
                   f"{_ci(t['auroc_within_problem_min'], 1)} | {100 * t['step_error']['f1']:.1f} | "
                   f"{_ci(_last(t['top1_min']))} | {_ci(_last(t['weighted_majority_min']))} | "
                   f"{_ci(_last(t['majority']))} | {_paired(t['top1_min'])} | "
                   f"{_paired(t['weighted_majority_min'])} | {p['train_s']:.0f} |\n")
    out.append("\nThe last two columns: the paired difference with majority voting at N = "
               f"{n} (points), bootstrapped over the same resamples of the problems.\n")
    return "".join(out) + trend_lines(r.get("trend", {}))


def _paired(x: dict) -> str:
    d = x.get("minus_majority")
    if not d:
        return "-"
    return _ci({"value": d["diff"][-1], "ci": d["ci"][-1] if d.get("ci") else None})


def plots(r: dict, base: Path) -> None:
    """The paper's two scaling figures: x = problems (one line per k) and x = responses per problem (one line
    per P), for AUROC(min), top-1@16 and weighted majority@16 (majority voting dashed), CE seed 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ce = [p for p in r["points"].values() if p["objective"] == "ce" and p["pool_seed"] == 1]
    maj = 100 * ce[0]["test"]["majority"]["acc"][-1] if ce else None
    metrics = (("AUROC (min)", lambda t: t["auroc_min"]["value"]),
               ("top-1 @16 (%)", lambda t: 100 * t["top1_min"]["acc"][-1]),
               ("weighted majority @16 (%)", lambda t: 100 * t["weighted_majority_min"]["acc"][-1]))
    for fig_name, x_key, line_key, x_label in (("problems", "problems", "responses_per_problem", "problems"),
                                               ("responses", "responses_per_problem", "problems",
                                                "responses per problem")):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for ax, (label, get) in zip(axes, metrics):
            for line in sorted({p[line_key] for p in ce}):
                pts = sorted((p[x_key], get(p["test"])) for p in ce if p[line_key] == line)
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o",
                        label=f"{line} {'per problem' if line_key == 'responses_per_problem' else 'problems'}")
            if "@16" in label and maj is not None:
                ax.axhline(maj, color="k", ls="--", label="majority @16")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
        axes[0].legend(fontsize=8)
        fig.suptitle("implicit PRM (CE) vs training data, test split")
        fig.tight_layout()
        fig.savefig(f"{base}_{fig_name}.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
