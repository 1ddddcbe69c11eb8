"""The paper's experiments at laptop scale, on the built-in verifiable data and the embedded model.

What it reproduces (Yuan et al. 2024, arXiv 2412.01981):
- Table 1: the four objectives (CE, DPO, NCA, KTO) trained on the same rollouts, in one best-of-N table;
- Figure 3: each of them with and without majority-vote integration (weighted majority);
- Figures 5 and 6: scaling the number of problems, and the responses per problem (1, 2, 4, 8), with CE,
  including one response per problem (unpaired: only CE can train on it);
- the reward with and without the reference model at inference (beta * log pi_theta/pi_ref vs beta * log pi_theta).

Every training set is a nested subset of one pool of simulated solver rollouts (96 problems x 8 responses, sampled
as a solver would, so some problems are all right or all wrong): "P problems x k responses" is the first k responses
of the first P problems. The test set is 32 other problems x 16 responses. All runs use LoRA r=16, lr 1e-4,
beta 0.5, one epoch, batch 8 (a pair counts as one example), empty system prompt: the demo's recipe.

Usage:  python experiments/laptop_scale.py [--out runs/laptop] [--results experiments/results] [--quick]
Re-running resumes: finished trainings and scorings are kept. --quick is a tiny smoke version (minutes).
Writes <results>/laptop_scale.json, laptop_scale.md and laptop_scale_*.png.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.distributed import default_device
from implicit_prm.core.io import read_json_records, write_json, write_jsonl, write_text
from implicit_prm.core.precision import resolve_precision
from implicit_prm.core.results import machine
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.eval.bon import BonConfig, run_bon
from implicit_prm.eval.outcome import OutcomeConfig, run_outcome
from implicit_prm.eval.scored import merge_scored, score_once
from implicit_prm.eval.steps import StepsConfig, run_steps
from implicit_prm.models.loading import DEFAULT_MODEL
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

BETA, LR = 0.5, 1e-4
NS = [1, 2, 4, 8, 16]


def runs(quick: bool) -> list[tuple[str, int, int, str]]:
    """(objective, problems, responses per problem, which experiment) for every training run."""
    if quick:
        return [("ce", 8, 2, "objectives"), ("dpo", 8, 2, "objectives"), ("ce", 8, 1, "responses")]
    return [("ce", 96, 4, "objectives"), ("dpo", 96, 4, "objectives"), ("nca", 96, 4, "objectives"),
            ("kto", 96, 4, "objectives"),
            ("ce", 48, 1, "responses"), ("ce", 48, 2, "responses"), ("ce", 48, 4, "responses"),
            ("ce", 48, 8, "responses"),
            ("ce", 24, 4, "problems")]  # with (ce, 48, 4) and (ce, 96, 4): 24, 48, 96 problems at k = 4


def subset(pool: list[dict], problems: int, k: int) -> list[dict]:
    return [{**r, "completions": r["completions"][:k], "correctness": r["correctness"][:k]} for r in pool[:problems]]


def read_jsonl(path: Path) -> list[dict]:
    return [rec for _, rec in read_json_records(path)]


def make_data(out: Path, pool_n: int, test_n: int, test_k: int) -> tuple[list[dict], Path]:
    """(the pool of training rollouts, the test file), written once under `out`."""
    pool_path, test_path = out / "pool.jsonl", out / "test.jsonl"
    if not pool_path.exists():
        write_builtin(BuiltinDataConfig(output=str(pool_path), n_problems=pool_n, samples_per_problem=8,
                                        balance=False, seed=7001))
    if not test_path.exists():
        write_builtin(BuiltinDataConfig(output=str(test_path), n_problems=test_n, samples_per_problem=test_k,
                                        balance=False, seed=7002))
    return read_jsonl(pool_path), test_path


def train_and_score(out: Path, pool: list[dict], test_path: Path, run: tuple[str, int, int, str], model: str,
                    quick: bool) -> tuple[str, dict, dict[str, Path]]:
    """Train one run (kept if finished), score the test set with and without the reference: (name, info, sources)."""
    objective, problems, k, experiment = run
    name = f"{objective}_p{problems}_k{k}"
    run_dir = out / name
    data = out / f"train_p{problems}_k{k}.jsonl"
    if not data.exists():
        write_jsonl(data, subset(pool, problems, k))
    t0 = time.time()
    prm = train(TrainConfig(data=str(data), output=str(run_dir / "prm"), model=model, objective=objective,
                            lr=LR, beta=BETA, lora=True, system_prompt="", max_length=512, batch_size=2 if quick else 8,
                            checkpoint_every=10, max_pairs_per_prompt=2 if objective in ("dpo", "nca") else None,
                            progress=False))
    t_train = time.time() - t0
    t0 = time.time()
    sources = {name: score_once(str(prm), test_path, run_dir / "test.jsonl", progress=False)}
    t_score = time.time() - t0
    # The PRM pass above stored the PRM's own log-probs in the cache: the reference-free variant is free.
    sources[name + "_noref"] = score_once(str(prm), test_path, run_dir / "test.noref.jsonl", reference_free=True,
                                          beta=BETA, progress=False)
    log = read_jsonl(Path(prm) / "train_log.jsonl") if (Path(prm) / "train_log.jsonl").exists() else []
    losses = [r["loss"] for r in log if "loss" in r]
    labels = [c for r in subset(pool, problems, k) for c in r["correctness"]]
    info = {"objective": objective, "problems": problems, "responses_per_problem": k,
            "experiment": experiment, "train_responses": len(labels), "train_correct": int(sum(labels)),
            "steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "train_s_this_invocation": round(t_train, 1), "score_s_this_invocation": round(t_score, 1)}
    print(f"[laptop] {name}: trained ({len(losses)} steps), scored", flush=True)
    return name, info, sources


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/laptop")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    out, res = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    pool_n, test_n, test_k = (8, 4, 4) if args.quick else (96, 32, 16)
    pool, test_path = make_data(out, pool_n, test_n, test_k)
    ns = [n for n in NS if n <= test_k]

    info: dict[str, dict] = {}
    sources: dict[str, Path] = {}
    for run in runs(args.quick):
        name, run_info, run_sources = train_and_score(out, pool, test_path, run, args.model, args.quick)
        info[name] = run_info
        sources.update(run_sources)
    sources["untrained"] = score_once(args.model, test_path, out / "untrained.jsonl", reference_free=True,
                                      beta=BETA, system_prompt="", progress=False)

    both = merge_scored(sources, out / "all.jsonl")
    merged = read_jsonl(both)
    bon = run_bon(BonConfig(input=str(both), ns=ns, seed=0, plot=str(out / "all.bon.png")))
    outcome = run_outcome(OutcomeConfig(input=str(both)))
    steps = {name: run_steps(StepsConfig(input=str(p), split_half=True))["evaluated"] for name, p in sources.items()}

    m = bon["methods"]

    def metrics(src: str) -> dict:
        return {"top1_min": m[f"{src}.min"]["acc"], "weighted_majority_min": m[f"weighted_majority.{src}.min"]["acc"],
                "auroc_min": outcome["methods"][f"{src}.min"]["auroc"],
                "step_f1_split_half": steps[src]["f1"], "step_acc_err": steps[src]["acc_err"],
                "step_acc_ok": steps[src]["acc_ok"]}

    for name in info:
        info[name]["with_reference"] = metrics(name)
        info[name]["without_reference"] = metrics(name + "_noref")
    result = {
        "schema": "implicit-prm/laptop-scale/v1",
        "command": "python experiments/laptop_scale.py" + (" --quick" if args.quick else ""),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "recipe": {"model": args.model, "lora_r": 16, "lr": LR, "beta": BETA, "epochs": 1, "batch_size": 8,
                   "precision": resolve_precision(default_device(), "auto"),
                   "dpo_nca_max_pairs_per_prompt": 2, "system_prompt": ""},
        "test": {"problems": test_n, "responses_per_problem": test_k, "n_responses": len(merged),
                 "correct": int(sum(r["correctness"] for r in merged))},
        "ns": ns,
        "baselines": {"majority": m["majority"]["acc"], "random": m["random"]["acc"], "pass_at_n": m["pass@N"]["acc"],
                      "untrained_reference_free": metrics("untrained")},
        "runs": info,
        "wall_s_this_invocation": round(time.time() - t_start, 1),
    }
    write_json(res / "laptop_scale.json", result)
    write_text(res / "laptop_scale.md", tables(result))
    plots(result, res)
    print(tables(result))


def _f(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def tables(r: dict) -> str:
    ns = r["ns"]
    head = "| method | " + " | ".join(f"N={n}" for n in ns) + " | AUROC(min) | step F1 |\n"
    head += "|---" * (len(ns) + 3) + "|\n"

    def row(label, accs, auroc=None, f1=None):
        au = "-" if auroc is None else f"{auroc:.3f}"
        return f"| {label} | " + " | ".join(_f(a) for a in accs) + f" | {au} | {_f(f1)} |\n"

    b = r["baselines"]
    out = [f"Test: {r['test']['problems']} problems x {r['test']['responses_per_problem']} responses "
           f"({r['test']['correct']} of {r['test']['n_responses']} correct). Best-of-N accuracy (%), mean over 100 "
           "random subsets; AUROC of the min step reward; step-error F1 (%) with the threshold tuned on a seeded "
           "half of the test set and measured on the other half.\n\n"]
    for exp, title in (("objectives", "Objectives (paper Table 1, Figure 3)"),
                       ("scaling", "Scaling: problems x responses per problem, CE (paper Figures 5 and 6)")):
        out.append(f"### {title}\n\n" + head)
        names = [n for n, i in r["runs"].items()
                 if (i["experiment"] == "objectives") == (exp == "objectives") or
                 (exp == "scaling" and i["objective"] == "ce")]
        if exp == "scaling":
            names = sorted(names, key=lambda n: (r["runs"][n]["problems"], r["runs"][n]["responses_per_problem"]))
        for n in names:
            i = r["runs"][n]
            label = (i["objective"].upper() if exp == "objectives" else
                     f"{i['problems']} problems x {i['responses_per_problem']} ({i['train_responses']} responses)")
            w, wo = i["with_reference"], i["without_reference"]
            out.append(row(f"{label}, top-1 by min", w["top1_min"], w["auroc_min"], w["step_f1_split_half"]))
            out.append(row(f"{label}, weighted majority", w["weighted_majority_min"]))
            if exp == "objectives":
                out.append(row(f"{label}, no reference at inference, top-1", wo["top1_min"], wo["auroc_min"],
                               wo["step_f1_split_half"]))
        u = b["untrained_reference_free"]
        out.append(row("untrained model, reference-free, top-1", u["top1_min"], u["auroc_min"], u["step_f1_split_half"]))
        out.append(row("majority voting", b["majority"]))
        out.append(row("random", b["random"]))
        out.append(row("pass@N", b["pass_at_n"]))
        out.append("\n")
    out.append("### With and without the reference model at inference (all runs)\n\n"
               f"| run | AUROC with ref | AUROC without | top-1 N={ns[-1]} with | without | step F1 with | without |\n"
               "|---|---|---|---|---|---|---|\n")
    for n, i in r["runs"].items():
        w, wo = i["with_reference"], i["without_reference"]
        out.append(f"| {n} | {w['auroc_min']:.3f} | {wo['auroc_min']:.3f} | {_f(w['top1_min'][-1])} | "
                   f"{_f(wo['top1_min'][-1])} | {_f(w['step_f1_split_half'])} | {_f(wo['step_f1_split_half'])} |\n")
    return "".join(out)


def plots(r: dict, res: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns, b = r["ns"], r["baselines"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in ((axes[0], "top1_min", "top-1 by min step reward"),
                           (axes[1], "weighted_majority_min", "weighted majority (min)")):
        for n, i in r["runs"].items():
            if i["experiment"] == "objectives":
                ax.plot(ns, [100 * a for a in i["with_reference"][key]], marker="o", label=i["objective"].upper())
        ax.plot(ns, [100 * a for a in b["majority"]], "k--", label="majority")
        ax.plot(ns, [100 * a for a in b["untrained_reference_free"][key]], ":", color="gray",
                label="untrained ref-free")
        ax.set_xscale("log", base=2)
        ax.set_title(title)
        ax.set_xlabel("N")
    axes[0].set_ylabel("best-of-N accuracy (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(res / "laptop_scale_objectives.png", dpi=110)
    plt.close(fig)

    ce = {n: i for n, i in r["runs"].items() if i["objective"] == "ce"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label in ((axes[0], "auroc_min", "AUROC (min)"), (axes[1], "top1_min", "top-1 accuracy at N=16 (%)"),
                           (axes[2], "step_f1_split_half", "step-error F1 (%)")):
        def val(i):
            v = i["with_reference"][key]
            v = v[-1] if isinstance(v, list) else v
            return v if key == "auroc_min" else 100 * v
        for fixed, axis, xkey, mark in (("problems", "responses_per_problem", "responses_per_problem", "o"),
                                        ("responses_per_problem", "problems", "problems", "s")):
            pts = {}
            for i in ce.values():
                others = [j for j in ce.values() if j[axis] != i[axis] and j[fixed] == i[fixed]]
                if others:
                    pts.setdefault(i[fixed], []).append((i[xkey], val(i)))
            for f, p in pts.items():
                p.sort()
                lbl = (f"{f} problems, x = responses per problem" if fixed == "problems"
                       else f"{f} per problem, x = problems")
                ax.plot([x for x, _ in p], [y for _, y in p], marker=mark, label=lbl)
        ax.set_xscale("log", base=2)
        ax.set_ylabel(label)
        ax.set_xlabel("responses per problem / problems")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(res / "laptop_scale_scaling.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
