"""The demo's recipe, chosen on dev data: full fine-tune or LoRA, beta, lr, epochs, data size, score, precision.

Every run trains a CE implicit PRM from the embedded model on built-in (version 2) training data and scores one
dev set; nothing here reads the demo's test split (data seed 3). The data:

- training: `implicit-prm data --seed 1 --n-problems 400` (balanced, 2 responses per problem: one right, one
  wrong), of which a run takes the first 200 or all 400 problems. The demo's own training file is the first 200.
- dev: seed 2, 48 problems x 6 responses sampled as a solver would (not balanced). The demo's dev file (seed 2,
  32 x 4) is its first 32 problems' first 4 responses.

Judged, as the issue asks, by dev AUROC (right against wrong response, for the min, sum and mean of the step
rewards) and dev step-error F1 (the first step whose sigmoid(q-value) falls below a threshold tuned on a seeded
half of dev, measured on the other half). Times are this machine's wall clock for training (with its reference
pass on the first run of a data size and precision; later runs find it in the shared log-prob cache) and for
scoring dev.

    python experiments/recipe_sweep.py [--runs NAME ...] [--out runs/sweep] [--results experiments/results]

Re-running resumes (finished runs are kept). Writes <results>/recipe_sweep.json and recipe_sweep.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.io import read_json_records, write_json, write_jsonl, write_text
from implicit_prm.core.results import config_path, machine
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.eval.metrics import bootstrap_ci, weighted_auroc
from implicit_prm.eval.outcome import OutcomeConfig, read_outcome_units, run_outcome
from implicit_prm.eval.scored import score_once
from implicit_prm.eval.steps import StepsConfig, run_steps
from implicit_prm.models.loading import DEFAULT_MODEL
from implicit_prm.rewards import auroc
from implicit_prm.training.checkpoints import is_finished
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

BASE = {"lora": True, "lr": 1e-4, "beta": 0.5, "epochs": 1, "problems": 200, "precision": "fp32"}
RUNS = {  # name -> what differs from BASE (the demo's recipe before this sweep)
    "base": {},
    "lora_lr3e-4": {"lr": 3e-4},
    "lora_beta0.05": {"beta": 0.05},
    "lora_lr3e-4_beta0.1": {"lr": 3e-4, "beta": 0.1},
    "full_lr2e-5": {"lora": False, "lr": 2e-5},
    "full_lr1e-5_beta0.05": {"lora": False, "lr": 1e-5, "beta": 0.05},
    "lora_epochs2": {"epochs": 2},
    "lora_400": {"problems": 400},
    "lora_300": {"problems": 300},
    "base_bf16": {"precision": "bf16"},
    "untrained": {},  # no training: the starting model as a reference-free scorer (beta log pi), the baseline
}
AGGS = ("min", "sum", "mean")


def make_data(out: Path) -> tuple[Path, Path]:
    """(the 400-problem training file, the dev file), written once."""
    out.mkdir(parents=True, exist_ok=True)
    train_path, dev_path = out / "train400.jsonl", out / "dev.jsonl"
    if not train_path.exists():
        write_builtin(BuiltinDataConfig(output=str(train_path), n_problems=400, samples_per_problem=2, seed=1))
    if not dev_path.exists():
        write_builtin(BuiltinDataConfig(output=str(dev_path), n_problems=48, samples_per_problem=6, balance=False,
                                        seed=2))
    return train_path, dev_path


def train_file(out: Path, train400: Path, problems: int) -> Path:
    if problems == 400:
        return train400
    path = out / f"train{problems}.jsonl"
    if not path.exists():
        write_jsonl(path, [rec for _, rec in list(read_json_records(train400))[:problems]])
    return path


def run_one(out: Path, name: str, train400: Path, dev: Path, model: str, previous: dict | None = None) -> dict:
    """Train (resuming) and score dev for one recipe; its metrics and times (a step found finished keeps the time
    `previous` recorded for it)."""
    r = {**BASE, **RUNS[name]}
    run_dir = out / name
    previous = previous or {}
    trained_before = is_finished(run_dir / "prm")
    scored_before = (run_dir / "dev.jsonl").exists() and config_path(run_dir / "dev.jsonl").exists()
    cache = str(out / f"logprobs.{r['precision']}.sqlite")  # shared by the runs of one precision
    t0 = time.time()
    prm = train(TrainConfig(data=str(train_file(out, train400, r["problems"])), output=str(run_dir / "prm"),
                            model=model, objective="ce", lr=r["lr"], beta=r["beta"], epochs=r["epochs"],
                            lora=r["lora"], batch_size=8, precision=r["precision"], system_prompt="", max_length=512,
                            seed=0, checkpoint_every=10, logprob_cache=cache, progress=False))
    t_train = time.time() - t0
    t0 = time.time()
    scored = score_once(str(prm), dev, run_dir / "dev.jsonl", precision=r["precision"], logprob_cache=cache,
                        progress=False)
    t_score = time.time() - t0
    log = [rec for _, rec in read_json_records(Path(prm) / "train_log.jsonl")]
    return evaluate(scored, {"recipe": r, "train_steps": len([x for x in log if "loss" in x]),
                             "last_loss": next((x["loss"] for x in reversed(log) if "loss" in x), None),
                             "train_s": (previous.get("train_s") or round(log[-1].get("elapsed_s", 0), 1))
                             if trained_before else round(t_train, 1),
                             "score_dev_s": previous.get("score_dev_s") if scored_before else round(t_score, 1)},
                    name)


def run_untrained(out: Path, dev: Path, model: str, previous: dict | None = None) -> dict:
    """The baseline: the starting model as a reference-free scorer (beta log pi) on dev, from the fp32 cache."""
    r = {**BASE, "lr": 0.0, "epochs": 0, "problems": 0}
    out_file = out / "untrained" / "dev.jsonl"
    scored_before = out_file.exists() and config_path(out_file).exists()
    t0 = time.time()
    scored = score_once(model, dev, out_file, reference_free=True, beta=r["beta"], system_prompt="",
                        precision=r["precision"], logprob_cache=str(out / f"logprobs.{r['precision']}.sqlite"),
                        progress=False)
    t_score = (previous or {}).get("score_dev_s") if scored_before else round(time.time() - t0, 1)
    return evaluate(scored, {"recipe": r, "train_steps": 0, "last_loss": None, "train_s": 0.0,
                             "score_dev_s": t_score}, "untrained")


def evaluate(scored: Path, res: dict, name: str) -> dict:
    """res plus dev AUROC per aggregation and split-half step-error F1, with bootstrap intervals; printed."""
    outcome = run_outcome(OutcomeConfig(input=str(scored), n_bootstrap=1000))
    steps = run_steps(StepsConfig(input=str(scored), split_half=True, n_bootstrap=1000))
    res = {**res,
           "auroc": {a: outcome["methods"][f"prm.{a}"]["auroc"] for a in AGGS},
           "auroc_ci": {a: (outcome["methods"][f"prm.{a}"].get("ci") or {}).get("auroc") for a in AGGS},
           "step_f1": steps["evaluated"]["f1"], "step_f1_ci": (steps["evaluated"].get("ci") or {}).get("f1"),
           "step_acc_err": steps["evaluated"]["acc_err"], "step_acc_ok": steps["evaluated"]["acc_ok"],
           "auroc_min_by_error_kind": by_error_kind(scored)}
    print(f"[sweep] {name}: AUROC min {res['auroc']['min']:.3f} sum {res['auroc']['sum']:.3f} "
          f"mean {res['auroc']['mean']:.3f}, step F1 {100 * res['step_f1']:.1f}; train {res['train_s']} s, "
          f"score {res['score_dev_s']} s", flush=True)
    return res


def by_error_kind(scored: Path, agg: str = "min") -> dict[str, dict]:
    """For each error kind: AUROC of the correct responses against the wrong ones of that kind, and their count."""
    recs = [rec for _, rec in read_json_records(scored)]
    right = [r["scores"][agg] for r in recs if r["correctness"]]
    out = {}
    for kind in sorted({r.get("error_kind") for r in recs if not r["correctness"]}, key=str):
        wrong = [r["scores"][agg] for r in recs if not r["correctness"] and r.get("error_kind") == kind]
        out[str(kind)] = {"n": len(wrong), "auroc": auroc(right + wrong, [1] * len(right) + [0] * len(wrong))}
    return out


def paired_difference(run: Path, base: Path, agg: str = "min", n_bootstrap: int = 2000) -> dict:
    """AUROC(run) - AUROC(base) on the same dev responses, with a paired percentile bootstrap over problems: one
    resample of problems serves both, so what the two share (which problems are hard) cancels and the interval is
    far narrower than either AUROC's own."""
    labels, s_run, names, units = read_outcome_units(run)
    labels_b, s_base, names_b, units_b = read_outcome_units(base)
    if not (np.array_equal(labels, labels_b) and np.array_equal(units, units_b)):
        raise ValueError(f"{run} and {base} do not hold the same dev responses")
    a, b = s_run[:, names.index(f"prm.{agg}")], s_base[:, names_b.index(f"prm.{agg}")]
    diff = auroc(a.tolist(), labels.tolist()) - auroc(b.tolist(), labels.tolist())
    ci = bootstrap_ci(lambda c: weighted_auroc(c, a, labels, units) - weighted_auroc(c, b, labels, units),
                      int(units.max()) + 1, n_bootstrap, seed=0)
    return {"diff": diff, "ci": [float(ci[0][0]), float(ci[0][1])]}


def table(results: dict) -> str:
    def ci(c):
        return "" if not c else f" [{c[0]:.3f}, {c[1]:.3f}]"
    lines = ["| run | LoRA | lr | beta | epochs | problems | precision | AUROC min | min - base (paired) | AUROC sum | "
             "AUROC mean | step F1 (%) | train s | score s |", "|" + "---|" * 14]
    for name, x in results.items():
        r = x["recipe"]
        f1ci = x.get("step_f1_ci")
        lines.append(
            f"| {name} | {'yes' if r['lora'] else 'no'} | {r['lr']:g} | {r['beta']:g} | {r['epochs']} | "
            f"{r['problems']} | {r['precision']} | {x['auroc']['min']:.3f}{ci(x['auroc_ci']['min'])} | "
            + (f"{x['vs_base']['diff']:+.3f}{ci(x['vs_base']['ci'])} | " if x.get("vs_base") else "- | ")
            + f"{x['auroc']['sum']:.3f} | {x['auroc']['mean']:.3f} | {100 * x['step_f1']:.1f}"
            + (f" [{100 * f1ci[0]:.1f}, {100 * f1ci[1]:.1f}]" if f1ci else "")
            + "".join(" | n/a" if v is None else f" | {v:.0f}" for v in (x["train_s"], x["score_dev_s"])) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    out, res = Path(args.out), Path(args.results)
    train400, dev = make_data(out)
    path = res / "recipe_sweep.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = previous.get("runs", {})
    for name in args.runs:
        results[name] = (run_untrained(out, dev, args.model, results.get(name)) if name == "untrained" else
                         run_one(out, name, train400, dev, args.model, results.get(name)))
        for other in results:
            if other != "base" and "base" in results:
                results[other]["vs_base"] = paired_difference(out / other / "dev.jsonl", out / "base" / "dev.jsonl")
        summary = {"schema": "implicit-prm/recipe-sweep/v1", "command": "python experiments/recipe_sweep.py",
                   "date": datetime.date.today().isoformat(),
                   "machine": machine(),
                   "train_data": "built-in v2, seed 1, balanced, 2 per problem (first `problems` of 400)",
                   "dev": "built-in v2, seed 2, 48 problems x 6, not balanced", "runs": results}
        write_json(path, summary)
        write_text(res / "recipe_sweep.md", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
