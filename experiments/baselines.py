"""The paper's comparison on built-in data: implicit PRMs against Math-Shepherd, AutoPSV and an ORM, with FLOPs.

Every method trains from the same responses with the demo's recipe (LoRA r=16 on the embedded SmolLM2-135M, lr
1e-4, one epoch, batch 8, no system prompt, `--precision auto`), and is judged on the demo's held-out splits:

- training responses: the demo's training file, `implicit-prm data --seed 1 --n-problems 200` (2 per problem,
  balanced: one right and one wrong);
- dev (the step-error threshold is tuned here): the demo's dev file, seed 2, 32 problems x 4;
- test: the demo's test file, seed 3, 40 problems x 16 (best-of-N for N = 1..16).

Methods:
- implicit_ce, implicit_dpo: `train --objective ce|dpo` (beta 0.5), scored by the min step reward;
- math_shepherd_k{4,8}_{hard,soft}: `label-mc --completer builtin --k K --label hard|soft` (the simulated solver
  completes each step prefix K times), then `train --objective step_bce`; scored by the min step P(+);
- orm: `train --objective orm` (the outcome label at every step boundary); scored by its last confidence;
- autopsv: the ORM's confidences on the training responses (`score`), `label-autopsv` (thresholds 0.05 / -0.5,
  not tuned), then `train --objective step_bce`; scored by the min step P(+).

FLOPs: the ledgers every command writes, summed per method over data collection (the simulated solver's
responses counted as SmolLM2-135M generating them; Monte-Carlo completions likewise), labelling and training
(the reference pass included); test and dev scoring are left out, as in the paper's comparison.

    python experiments/baselines.py [--out runs/baselines] [--results experiments/results] [--methods ...]

Resumable: finished steps are kept. Writes <results>/baselines_builtin.{json,md,png}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

from implicit_prm.collect.autopsv import AutoPSVConfig, label_autopsv
from implicit_prm.collect.builtin import write_builtin
from implicit_prm.collect.mc_labels import McLabelConfig, label_mc
from implicit_prm.core.distributed import default_device
from implicit_prm.core.io import write_json, write_text
from implicit_prm.core.precision import resolve_precision
from implicit_prm.core.results import config_path, machine
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.eval.bon import BonConfig, run_bon
from implicit_prm.eval.flops import method_table
from implicit_prm.eval.outcome import OutcomeConfig, run_outcome
from implicit_prm.eval.scored import merge_scored, score_once
from implicit_prm.eval.steps import StepsConfig, run_steps
from implicit_prm.flops.ledger import ledger_path
from implicit_prm.models.loading import DEFAULT_MODEL
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

RECIPE = {"lora": True, "lr": 1e-4, "beta": 0.5, "epochs": 1, "batch_size": 8, "max_length": 512,
          "system_prompt": "", "seed": 0}
SPLITS = {"train": (200, 2, True, 1), "dev": (32, 4, False, 2), "test": (40, 16, False, 3)}  # n, k, balance, seed
METHODS = {  # name -> (objective, how its training labels are made, the score that ranks responses)
    "implicit_ce": ("ce", None, "min"),
    "implicit_dpo": ("dpo", None, "min"),
    "math_shepherd_k4_hard": ("step_bce", ("mc", 4, "hard"), "min"),
    "math_shepherd_k4_soft": ("step_bce", ("mc", 4, "soft"), "min"),
    "math_shepherd_k8_hard": ("step_bce", ("mc", 8, "hard"), "min"),
    "math_shepherd_k8_soft": ("step_bce", ("mc", 8, "soft"), "min"),
    "orm": ("orm", None, "last"),
    "autopsv": ("step_bce", ("autopsv",), "min"),
}
NS = [1, 2, 4, 8, 16]


def make_splits(out: Path) -> dict[str, Path]:
    paths = {}
    for split, (n, k, balance, seed) in SPLITS.items():
        paths[split] = out / f"{split}.jsonl"
        if not done(paths[split]):
            write_builtin(BuiltinDataConfig(output=str(paths[split]), n_problems=n, samples_per_problem=k,
                                            balance=balance, seed=seed))
    return paths


def done(path: Path) -> bool:
    """A finished output: its config is written last (and its FLOPs ledger before it)."""
    return path.exists() and config_path(path).exists() and ledger_path(path).exists()


def train_one(out: Path, name: str, data: Path, objective: str, model: str, precision: str) -> Path:
    cache = str(out / f"logprobs.{precision}.sqlite")
    return train(TrainConfig(data=str(data), output=str(out / name / "prm"), model=model, objective=objective,
                             precision=precision, checkpoint_every=10, logprob_cache=cache, progress=False,
                             **{k: RECIPE[k] for k in ("lora", "lr", "beta", "epochs", "batch_size", "max_length",
                                                       "system_prompt", "seed")}))


def run_method(out: Path, name: str, splits: dict[str, Path], model: str, precision: str) -> dict:
    """Label (if the method needs it), train, score dev and test; the ledgers it spent and the wall times."""
    objective, labels, _ = METHODS[name]
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    ledgers = [ledger_path(splits["train"])]  # the training responses: the same for every method
    t = {}
    data = splits["train"]
    t0 = time.time()
    if labels and labels[0] == "mc":
        data = run / "train.labelled.jsonl"
        if not done(data):
            label_mc(McLabelConfig(input=str(splits["train"]), output=str(data), completer="builtin", k=labels[1],
                                   label=labels[2], progress=False))
        ledgers.append(ledger_path(data))
    elif labels and labels[0] == "autopsv":
        orm = train_one(out, "orm", splits["train"], "orm", model, precision)  # shared with the orm method
        conf = score_once(str(orm), splits["train"], run / "train.orm.jsonl", precision=precision, progress=False)
        data = run / "train.labelled.jsonl"
        if not done(data):
            label_autopsv(AutoPSVConfig(input=str(conf), output=str(data)))
        ledgers += [ledger_path(orm), ledger_path(conf)]
    t["label_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    prm = train_one(out, name, data, objective, model, precision)
    t["train_s"] = round(time.time() - t0, 1)
    ledgers.append(ledger_path(prm))
    scored = {}
    t0 = time.time()
    for split in ("dev", "test"):
        scored[split] = score_once(str(prm), splits[split], run / f"{split}.scored.jsonl", precision=precision,
                                   logprob_cache=str(out / f"logprobs.{precision}.sqlite"), progress=False)
    t["score_s"] = round(time.time() - t0, 1)
    return {"ledgers": [str(p) for p in ledgers], "scored": {k: str(v) for k, v in scored.items()}, "times": t}


def evaluate(out: Path, runs: dict[str, dict]) -> dict:
    """Best-of-N (top-1 and weighted majority), AUROC and dev-tuned step-error F1 of every method on test."""
    both = merge_scored({m: Path(r["scored"]["test"]) for m, r in runs.items()}, out / "test.all.jsonl")
    bon = run_bon(BonConfig(input=str(both), ns=NS, seed=0))
    outcome = run_outcome(OutcomeConfig(input=str(both)))
    table = method_table({m: [Path(p) for p in r["ledgers"]] for m, r in runs.items()}, "implicit_ce"
                         if "implicit_ce" in runs else None)
    rows = {}
    for m, r in runs.items():
        agg = METHODS[m][2]
        steps = run_steps(StepsConfig(input=r["scored"]["test"], tune_on=r["scored"]["dev"]))
        key = f"{m}.{agg}"
        o = outcome["methods"][key]
        rows[m] = {"score": agg, "top1": bon["methods"][key]["acc"], "top1_ci": bon["methods"][key].get("ci"),
                   "weighted_majority": bon["methods"][f"weighted_majority.{key}"]["acc"],
                   "weighted_majority_ci": bon["methods"][f"weighted_majority.{key}"].get("ci"),
                   "auroc": o["auroc"], "auroc_ci": (o.get("ci") or {}).get("auroc"),
                   "step_f1": steps["evaluated"]["f1"], "step_f1_ci": (steps["evaluated"].get("ci") or {}).get("f1"),
                   "threshold": steps.get("threshold"), "flops": table["methods"][m]["total"],
                   "flops_by_phase": table["methods"][m]["flops"], "flops_ratio": table["methods"][m]["ratio"],
                   "times": r["times"]}
    ref = {k: bon["methods"][k]["acc"] for k in ("majority", "random", "pass@N")}
    return {"methods": rows, "reference": ref, "ns": NS, "flops_table": table}


def markdown(res: dict) -> str:
    ns = res["ns"]
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [f"# Baselines on built-in data ({res['date']}, {res['machine']['cpu']}, precision {res['precision']})",
             "", f"Best-of-N top-1 accuracy (%) on the test split ({res['splits']['test'][0]} problems x "
             f"{res['splits']['test'][1]}), N = " + ", ".join(map(str, ns)) + f"; then, at N = {ns[-1]}: the 95% "
             "bootstrap interval of top-1, weighted majority, AUROC (right against wrong), step-error F1 (threshold "
             "tuned on dev), and the FLOPs of data collection + labelling + training",
             "", "| method | score | " + " | ".join(f"N={n}" for n in ns) + " | top-1 95% CI | weighted maj. "
             "| AUROC | step F1 | FLOPs | x implicit_ce |", "|" + "---|" * (len(ns) + 8)]
    for m, r in res["methods"].items():
        ci = r["top1_ci"][-1] if r["top1_ci"] else None
        lines.append(f"| {m} | {r['score']} | " + " | ".join(pct(a) for a in r["top1"])
                     + f" | {'n/a' if ci is None else f'[{pct(ci[0])}, {pct(ci[1])}]'}"
                     + f" | {pct(r['weighted_majority'][-1])} | {r['auroc']:.3f} | {pct(r['step_f1'])}"
                     + f" | {r['flops']:.3g} | {r['flops_ratio']:.2f} |")
    for k, acc in res["reference"].items():
        lines.append(f"| {k} | - | " + " | ".join(pct(a) for a in acc) + " | | | | | | |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Best-of-16 accuracy against FLOPs (the paper's Figure 1), one point per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for m, r in res["methods"].items():
        ax.scatter(r["flops"], 100 * r["top1"][-1], s=30)
        ax.annotate(m, (r["flops"], 100 * r["top1"][-1]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    maj = 100 * res["reference"]["majority"][-1]
    ax.axhline(maj, ls="--", lw=0.8, color="gray")
    ax.text(ax.get_xlim()[0], maj, " majority@16", fontsize=7, va="bottom", color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs: data collection + labelling + training (ledgers)")
    ax.set_ylabel("best-of-16 top-1 accuracy (%)")
    ax.set_title(f"Built-in data, SmolLM2-135M LoRA ({res['precision']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/baselines")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--quick", action="store_true", help="a smoke run on tiny splits (results not written)")
    args = ap.parse_args()
    out, results = Path(args.out), Path(args.results)
    if args.quick:
        out = out.with_name(out.name + "_quick")  # never mixed with a full run's files
        SPLITS.update(train=(8, 2, True, 1), dev=(4, 4, False, 2), test=(4, 4, False, 3))
        NS[:] = [1, 2, 4]
    precision = resolve_precision(default_device(), args.precision)
    t0 = time.time()
    splits = make_splits(out)
    runs = {}
    for m in args.methods:
        runs[m] = run_method(out, m, splits, args.model, precision)
        print(f"[baselines] {m}: {runs[m]['times']}", flush=True)
    res = evaluate(out, runs)
    res.update(date=datetime.date.today().isoformat(), machine=machine(), precision=precision,
               recipe=RECIPE, splits={k: list(v) for k, v in SPLITS.items()}, wall_s=round(time.time() - t0),
               command="python experiments/baselines.py")
    if args.quick:
        results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "baselines_builtin.json", res)
    write_text(results / "baselines_builtin.md", markdown(res))
    plot(res, results / "baselines_builtin.png")
    print(markdown(res))
    print(json.dumps({m: r["flops_ratio"] for m, r in res["methods"].items()}))


if __name__ == "__main__":
    main()
