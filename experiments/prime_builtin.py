"""PRIME at laptop scale: outcome-only RLOO, PRIME with the online PRM and PRIME with a frozen PRM, at equal
rollout budgets, on the built-in arithmetic tiers with the embedded SmolLM2-135M (issue 23, item 7).

Data (fixed before any run): the train split of the tiers (`arith:TIERS:train`, shuffled with seed 0) gives the
first --n-dev problems to a dev set and the rest to RL training; the held-out split (`arith:TIERS:test`, the first
--n-test) is only evaluated, never used to choose anything. Learning rates come from `--stage pilot`: each arm's
candidate rates for a few steps, scored on the dev set (pass@1 at temperature 1, the mean over --n-samples
samples); `--stage main` reads the pilot's choice (or the rates given). To fit the CPU budget the pilot runs only
outcome-only RLOO and PRIME with the online PRM (each over --lrs; the online PRM's rate over --prm-lrs); the frozen
arm takes the online arm's policy rate (same algorithm, same advantage scale).

The frozen arm's PRM is trained beforehand with `implicit-prm train` (CE, LoRA) on rollouts of the initial policy
on the training problems (a PRM frozen at its start would give zero process rewards: that arm would be RLOO).

Stages, each resumable (a run restarted with the same command continues):
    python experiments/prime_builtin.py --stage pilot [--pilot-steps 4]
    python experiments/prime_builtin.py --stage main [--steps 24] [--seeds 0 1]
    python experiments/prime_builtin.py --stage report
    python experiments/prime_builtin.py --quick --model M       (a minute on a tiny model: checks the script)
Writes <results>/prime_builtin.json and .png (report), <results>/prime_pilot.json (pilot).
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

from implicit_prm.collect.rollout import RolloutConfig, rollout
from implicit_prm.core.io import write_json, write_jsonl
from implicit_prm.core.results import machine
from implicit_prm.data.benchmarks import load_problems
from implicit_prm.rl.run import RLConfig, rl
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

ARMS = ("rloo", "prime-online", "prime-frozen")
ROOT = Path(__file__).resolve().parent


def problem_files(args, out: Path) -> dict[str, str]:
    """dev / train / test problem files (generic JSONL: problem, answer, id), written once."""
    files = {split: out / f"problems_{split}.jsonl" for split in ("dev", "train", "test")}
    if not all(f.exists() for f in files.values()):
        pool = load_problems(f"arith:{args.tiers}:train")
        held = load_problems(f"arith:{args.tiers}:test")[:args.n_test]
        for split, problems in (("dev", pool[:args.n_dev]), ("train", pool[args.n_dev:]), ("test", held)):
            write_jsonl(files[split], [{"problem": p.question, "answer": p.answer, "id": p.id} for p in problems])
    return {k: str(v) for k, v in files.items()}


def frozen_prm(args, files: dict, out: Path) -> str:
    """The frozen arm's PRM: CE on rollouts of the initial policy (the first --prm-problems training problems x
    --n-samples, temperature 1)."""
    rollouts = out / "prm_rollouts.jsonl"
    rollout(RolloutConfig(problems=files["train"], output=str(rollouts), model=args.model, n_samples=args.n_samples,
                          limit=args.prm_problems, temperature=1.0, max_new_tokens=args.max_new_tokens, top_p=1.0,
                          seed=0, precision=args.precision))  # a finished output is kept
    prm = out / "prm_frozen"
    # The demo's recipe for this model (CE, LoRA, lr 1e-4, beta 0.5: chosen on dev data by recipe_sweep.py). PRIME
    # divides process rewards by the batch's largest return, so the beta it trained with does not set their scale.
    train(TrainConfig(model=args.model, data=str(rollouts), objective="ce", output=str(prm), lora=True, lr=1e-4,
                      beta=0.5, max_steps=args.prm_steps, progress=False))
    return str(prm)


def rl_config(args, files: dict, arm: str, seed: int, lr: float, prm_lr: float, out: Path, steps: int,
              eval_on: str, prm: str | None, eval_every: int) -> RLConfig:
    return RLConfig(output=str(out), problems=files["train"], eval_problems=files[eval_on], n_eval=args.n_eval,
                    eval_every=eval_every, model=args.model, precision=args.precision, gradient_checkpointing=False,
                    prm=prm if arm == "prime-frozen" else None,
                    algorithm="rloo" if arm == "rloo" else "prime",
                    prm_update="frozen" if arm == "prime-frozen" else "online", n_samples=args.n_samples,
                    prompts_per_step=args.prompts_per_step, steps_per_generation=args.steps_per_generation,
                    max_steps=steps, max_new_tokens=args.max_new_tokens, lr=lr, prm_lr=prm_lr, seed=seed)


def curve(run: Path) -> dict:
    """Per rollout batch: held-out pass@1 and answered rate (at evaluations), the PRM's pairwise accuracy and the
    kept groups (training batches), and seconds per rollout batch."""
    state = json.loads((run / "trainer_state.json").read_text()) if (run / "trainer_state.json").exists() else None
    if state is None:
        ckpts = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    cfg = json.loads((run / "rl_config.json").read_text())
    spg = cfg["steps_per_generation"]
    hist = state["log_history"]
    out = {"eval": [(e["step"] // spg, e["eval_rewards/correct/mean"], e.get("eval_answered"))
                    for e in hist if "eval_rewards/correct/mean" in e],
           "pairwise_acc": [(e["step"] // spg, e["prime/prm_pairwise_acc"]) for e in hist
                            if "prime/prm_pairwise_acc" in e],
           "kept": [(e["step"] // spg, e["prime/kept_groups"]) for e in hist if "prime/kept_groups" in e],
           "train_correct": [(e["step"] // spg, e["rewards/correct/mean"]) for e in hist
                             if "rewards/correct/mean" in e],
           "prm_loss": [(e["step"] // spg, e["prime/prm_loss"]) for e in hist if "prime/prm_loss" in e]}
    out["config"] = {k: cfg.get(k) for k in ("algorithm", "prm_update", "seed", "lr", "prm_lr", "max_steps", "n_eval",
                                             "eval_every", "prompts_per_step", "n_samples", "precision", "prm")}
    step_time = [e["step_time"] for e in hist if "step_time" in e]
    out["s_per_rollout_batch"] = float(np.sum(step_time) / max(len(step_time) / spg, 1)) if step_time else None
    return out


def finished(run: Path) -> bool:
    """A run whose final trainer_state.json holds an evaluation (rl writes it last)."""
    return (run / "trainer_state.json").exists() and bool(curve(run)["eval"])


def pilot_rows(out: Path, results: Path) -> dict:
    """Every finished pilot run so far (a later invocation with more rates adds to the earlier ones), with the rows
    of an earlier prime_pilot.json whose run folders are gone (another machine, a clean checkout)."""
    earlier = results / "prime_pilot.json"
    rows = dict(json.loads(earlier.read_text())["rows"]) if earlier.exists() else {}
    for run in sorted((out / "pilot").glob("*_lr*")):
        if finished(run):
            cfg, c = json.loads((run / "rl_config.json").read_text()), curve(run)
            rows[run.name] = {"arm": run.name.split("_lr")[0], "lr": cfg["lr"],
                              "prm_lr": cfg["prm_lr"] if cfg["algorithm"] == "prime" else 0.0,
                              "dev_pass1": c["eval"][-1][1], "dev_answered": c["eval"][-1][2],
                              "train_correct": [v for _, v in c["train_correct"]],
                              "kept_groups": [v for _, v in c["kept"]],
                              "prm_pairwise_acc": [v for _, v in c["pairwise_acc"]],
                              "s_per_rollout_batch": c["s_per_rollout_batch"]}
    return rows


def pilot(args, files: dict, out: Path) -> dict:
    """Each arm's candidate learning rates, a few steps each, scored on the dev set (never the held-out set). Ties
    go to the smaller rate."""
    results = Path(args.results)
    partial = results / "prime_pilot.partial.json"
    for arm in [a for a in args.arms if a != "prime-frozen"]:
        for lr in args.lrs:
            for prm_lr in args.prm_lrs if arm == "prime-online" else [0.0]:
                run = out / "pilot" / f"{arm}_lr{lr:g}_prm{prm_lr:g}"
                if not finished(run):
                    rl(rl_config(args, files, arm, 0, lr, prm_lr or 1e-6, run, args.pilot_steps, "dev", None, 0))
                print(run.name, pilot_rows(out, results).get(run.name), flush=True)
                write_json(partial, {"experiment": "prime_pilot", "partial": True, "machine": machine(),
                                     "rows": pilot_rows(out, results), "args": vars(args)})  # as each run finishes
    rows, best = pilot_rows(out, results), {}
    for arm in {r["arm"] for r in rows.values()}:
        best[arm] = max((r for r in rows.values() if r["arm"] == arm), key=lambda r: (r["dev_pass1"], -r["lr"]))
    if "prime-online" in best:
        best["prime-frozen"] = {**best["prime-online"], "arm": "prime-frozen", "prm_lr": 0.0}
    result = {"experiment": "prime_pilot", "machine": machine(), "rows": rows, "chosen": best, "args": vars(args)}
    write_json(results / "prime_pilot.json", result)
    partial.unlink(missing_ok=True)
    return result


def main_runs(args, files: dict, out: Path) -> None:
    chosen = json.loads((Path(args.results) / "prime_pilot.json").read_text())["chosen"] if args.lr is None else {}
    prm = None  # trained when the frozen arm first needs it, so that the other arms need not wait for it
    for seed in args.seeds:
        for arm in args.arms:
            lr = args.lr if args.lr is not None else chosen[arm]["lr"]
            prm_lr = args.prm_lr if args.prm_lr is not None else (chosen[arm]["prm_lr"] or 1e-6)
            # Every arm starts from the same policy: with one evaluation at the end (--eval-every >= --steps),
            # the seed's RLOO run alone evaluates the initial policy too, and the report shares that point.
            every = args.eval_every if arm == ARMS[0] or args.eval_every < args.steps else 0
            if arm == "prime-frozen" and prm is None:
                prm = frozen_prm(args, files, out)
            rl(rl_config(args, files, arm, seed, lr, prm_lr, out / "main" / f"{arm}_seed{seed}", args.steps,
                         "test", prm, every))


def report(args, out: Path) -> dict:
    """Every finished main run, with the per-run curves of an earlier prime_builtin.json whose run folders are gone
    (a later session adds seeds to the earlier ones)."""
    earlier = Path(args.results) / "prime_builtin.json"
    raw = dict(json.loads(earlier.read_text()).get("runs", {})) if earlier.exists() else {}
    raw.update({run.name: curve(run) for run in sorted((out / "main").glob("*_seed*")) if finished(run)})
    by_arm: dict[str, list] = {}
    curves = copy.deepcopy(raw)  # the shared initial point is inserted below
    start = {name.rsplit("_seed", 1)[1]: c["eval"][0] for name, c in curves.items() if c["eval"][0][0] == 0}
    for name, c in curves.items():
        seed = name.rsplit("_seed", 1)[1]
        if c["eval"][0][0] != 0 and seed in start:  # the initial policy, evaluated by the seed's RLOO run
            c["eval"].insert(0, start[seed])
        by_arm.setdefault(name.rsplit("_seed", 1)[0], []).append(c)
    table = {}
    for arm, curves in by_arm.items():
        steps = sorted({s for c in curves for s, *_ in c["eval"]})
        rows = []
        for s in steps:
            vals = [v for c in curves for t, v, _ in c["eval"] if t == s]
            ans = [a for c in curves for t, _, a in c["eval"] if t == s and a is not None]
            rows.append({"step": s, "pass1_mean": float(np.mean(vals)), "pass1_min": float(np.min(vals)),
                         "pass1_max": float(np.max(vals)), "answered_mean": float(np.mean(ans)) if ans else None,
                         "seeds": len(vals)})
        seconds = [c["s_per_rollout_batch"] for c in curves if c["s_per_rollout_batch"] is not None]
        table[arm] = {"curve": rows, "s_per_rollout_batch": float(np.mean(seconds)) if seconds else None,
                      **{k: [c[k] for c in curves] for k in ("train_correct", "pairwise_acc", "prm_loss")}}
    result = {"experiment": "prime_builtin", "machine": machine(), "arms": table, "runs": raw,
              "report_args": vars(args)}  # each run's own settings are in runs[name]["config"]
    write_json(Path(args.results) / "prime_builtin.json", result)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 3, figsize=(15, 4))
        for i, (arm, t) in enumerate(table.items()):
            xs, color = [r["step"] for r in t["curve"]], f"C{i}"
            ax[0].plot(xs, [r["pass1_mean"] for r in t["curve"]], "o-", color=color, label=arm)
            ax[0].fill_between(xs, [r["pass1_min"] for r in t["curve"]], [r["pass1_max"] for r in t["curve"]],
                               color=color, alpha=0.2)
            for panel, key in ((1, "train_correct"), (2, "pairwise_acc")):
                for c in t[key]:
                    if c:  # the step a batch trained at: its rollouts came from the policy one batch earlier
                        ax[panel].plot([s for s, _ in c], [a for _, a in c], color=color, alpha=0.7, label=arm)
        ax[0].set(xlabel="rollout batch", ylabel="held-out pass@1", title="mean, range over seeds")
        ax[1].set(xlabel="rollout batch", ylabel="training reward (correct rate of the batch)")
        ax[2].set(xlabel="rollout batch", ylabel="PRM pairwise accuracy (training batches)")
        ax[0].legend()
        fig.tight_layout()
        fig.savefig(Path(args.results) / "prime_builtin.png", dpi=120)
    except ImportError:
        pass
    return result


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=("pilot", "main", "report"), default="pilot")
    ap.add_argument("--quick", action="store_true", help="tiny settings, every stage once: checks the script")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tiers", default="add1+sub1+add3")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--n-dev", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--n-eval", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--steps-per-generation", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=6, help="main runs: evaluate every N rollout batches")
    ap.add_argument("--lrs", type=float, nargs="+", default=[2e-5, 1e-4])
    ap.add_argument("--prm-lrs", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--pilot-steps", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--lr", type=float, default=None, help="skip the pilot's choice: this policy rate for all arms")
    ap.add_argument("--prm-lr", type=float, default=None)
    ap.add_argument("--prm-problems", type=int, default=100, help="problems rolled out for the frozen PRM")
    ap.add_argument("--prm-steps", type=int, default=100)
    ap.add_argument("--out", default="runs/prime")
    ap.add_argument("--results", default=str(ROOT / "results"))
    args = ap.parse_args()
    if args.quick:
        for k, v in dict(n_dev=4, n_test=4, n_eval=4, n_samples=2, prompts_per_step=2, steps_per_generation=1,
                         max_new_tokens=8, eval_every=2, lrs=[1e-3], prm_lrs=[1e-3], pilot_steps=1, steps=2,
                         seeds=[0], prm_problems=4, prm_steps=2).items():
            setattr(args, k, v)
    return args


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = problem_files(args, out)
    stages = ("pilot", "main", "report") if args.quick else (args.stage,)
    for stage in stages:
        if stage == "pilot":
            pilot(args, files, out)
        elif stage == "main":
            main_runs(args, files, out)
        else:
            print(json.dumps(report(args, out)["arms"], indent=1)[:3000])


if __name__ == "__main__":
    main()
