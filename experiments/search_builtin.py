"""Step-level search on built-in problems: best-of-N, beam search and DVTS at equal generation budgets, guided by
the demo's trained implicit PRM, with the simulated solver as the policy (exact truth).

Setup (fixed before any run, nothing tuned): the PRM is `make demo`'s (runs/demo/prm: CE, LoRA on SmolLM2-135M);
the problems are fresh built-in sets (`implicit-prm data --seed 4`, and `--seed 8` with `--seeds 4 8`: seeds no
other run uses; the demo trains on seed 1 and evaluates on 2 and 3), searched separately and pooled; the policy is
the version-2 simulated solver with those problems' own error model, each problem drawing its own samples; beams
are scored by their min step reward; beam width 4; N = 4, 8, 16 for each strategy, plus N = 1 (one sample: the
policy's own accuracy). Each search's final candidates are also scored as search-and-learn does: majority vote and
PRM-weighted majority (sigmoid of the min step reward) over the finished ones; also whether any is correct (the
oracle), the fraction correct, and how often a correct one outscores a wrong one of the same problem. Search spends
generated tokens (counted with the PRM's tokenizer), so each point is plotted at its measured tokens per problem.
Accuracy intervals: 95% percentile bootstrap over problems.

    python experiments/search_builtin.py [--prm runs/demo/prm] [--seeds 4] [--n-problems 60] [--out runs/search]

Resumable (each search run is; finished runs are kept, in <out>/seed<S>/). Writes
<results>/search_builtin.{json,md,png}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.io import write_json, write_text
from implicit_prm.core.results import machine
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.search.run import SearchConfig, search

STRATEGIES = ("best-of-n", "beam", "dvts")


def bootstrap(correct: np.ndarray, n: int = 1000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (n, len(correct)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def final_candidates(rec: dict, sep: str = "\n\n") -> list[tuple[str, bool]]:
    """(response, finished) of each of a search record's final candidates, rebuilt from its explored steps."""
    by_id = {e["id"]: e for e in rec["explored"]}
    out = []
    for cid in rec["final_candidates"]:
        steps, node = [], cid
        while node is not None:
            steps.append(by_id[node]["step"])
            node = by_id[node]["parent"]
        out.append((sep.join(steps[::-1]), bool(by_id[cid]["finished"])))
    return out


def votes(rec: dict) -> tuple[bool, bool, bool, float, list[tuple[float, bool]]]:
    """Over a record's finished final candidates, as search-and-learn scores its searches: is the majority answer
    correct, is the answer with the largest sum of sigmoid(score) correct (ties: the earliest answer); is any
    final candidate correct; the fraction of them correct; and each one's (score, correct)."""
    from implicit_prm.data.grading import grade, normalize_answer

    by_id = {e["id"]: e for e in rec["explored"]}
    tally: dict[str, list] = {}  # answer -> [correct, count, weight]
    scored = []
    for (text, done), cid in zip(final_candidates(rec), rec["final_candidates"]):
        g = grade(text, str(rec["answer"]))
        scored.append((by_id[cid]["score"], bool(g.correct)))
        if done and g.extracted is not None:
            t = tally.setdefault(normalize_answer(g.extracted), [g.correct, 0, 0.0])
            t[1] += 1
            t[2] += 1 / (1 + np.exp(-by_id[cid]["score"]))
    oracle, frac = any(c for _, c in scored), float(np.mean([c for _, c in scored]))
    if not tally:
        return False, False, oracle, frac, scored
    majority = max(tally.values(), key=lambda t: t[1])[0]  # max keeps the first of equal totals
    weighted = max(tally.values(), key=lambda t: t[2])[0]
    return bool(majority), bool(weighted), oracle, frac, scored


def within_problem_auroc(per_problem: list[list[tuple[float, bool]]]) -> float | None:
    """How often a correct final candidate outscores a wrong one of the same problem (ties count half): the
    ranking that best-of-N relies on. None without such pairs."""
    wins = pairs = 0.0
    for scored in per_problem:
        good = np.array([s for s, c in scored if c])
        bad = np.array([s for s, c in scored if not c])
        if len(good) and len(bad):
            diff = good[:, None] - bad[None, :]
            wins += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
            pairs += diff.size
    return wins / pairs if pairs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prm", default="runs/demo/prm")
    ap.add_argument("--seeds", type=int, nargs="+", default=[4], help="built-in problem sets, pooled (e.g. 4 8)")
    ap.add_argument("--n-problems", type=int, default=60, help="problems per set")
    ap.add_argument("--ns", type=int, nargs="*", default=[4, 8, 16])
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    ap.add_argument("--ref", default=None, help="reference model (default: the PRM's own)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default="runs/search")
    ap.add_argument("--results", default="experiments/results")
    args = ap.parse_args()
    out, results = Path(args.out), Path(args.results)
    runs = [("best-of-n", 1)] + [(s, n) for n in args.ns for s in args.strategies if s == "best-of-n" or n >= args.width]
    recs: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
    for seed in args.seeds:
        sub = out / f"seed{seed}"
        sub.mkdir(parents=True, exist_ok=True)
        problems = sub / "problems.jsonl"
        if not problems.exists():
            write_builtin(BuiltinDataConfig(output=str(problems), n_problems=args.n_problems, samples_per_problem=1,
                                            seed=seed, balance=False))
        for strategy, n in runs:
            path = sub / f"{strategy}_n{n}.jsonl"
            t0 = time.time()
            if not path.exists():
                search(SearchConfig(problems=str(problems), output=str(path), prm=args.prm, policy="solver",
                                    strategy=strategy, n=n, beam_width=min(args.width, n), precision=args.precision,
                                    ref=args.ref, progress=False))
            got = [json.loads(line) for line in path.read_text().splitlines()]
            recs[strategy, n] += got
            print(f"seed {seed} {strategy} N={n}: acc {100 * np.mean([bool(r['correct']) for r in got]):5.1f}"
                  f" ({time.time() - t0:.0f} s)", flush=True)
    rows = {}
    for (strategy, n), rs in recs.items():
        correct = np.array([bool(r["correct"]) for r in rs], dtype=float)
        voted = [votes(r) for r in rs]
        majority, weighted, oracle, frac = np.array([v[:4] for v in voted], dtype=float).T
        name = "single sample" if n == 1 else f"{strategy} N={n}"
        rows[name] = {"strategy": strategy, "n": n, "accuracy": float(correct.mean()), "ci": bootstrap(correct),
                      "majority_vote": float(majority.mean()), "weighted_majority": float(weighted.mean()),
                      "any_candidate_correct": float(oracle.mean()), "candidates_correct": float(frac.mean()),
                      "within_problem_auroc": within_problem_auroc([v[4] for v in voted]),
                      "generated_tokens": float(np.mean([r["budget"]["generated_tokens"] for r in rs])),
                      "prm_tokens": float(np.mean([r["budget"]["prm_tokens"] for r in rs])),
                      "wall_s_per_problem": float(np.mean([r["wall_s"] for r in rs])),
                      "finished": float(np.mean([r["finished"] for r in rs])), "n_problems": len(rs)}
        print(f"{name:<18} acc {100 * correct.mean():5.1f}  tokens/problem {rows[name]['generated_tokens']:7.0f}",
              flush=True)
    from implicit_prm.core.distributed import default_device
    from implicit_prm.core.precision import resolve_precision

    res = {"date": datetime.date.today().isoformat(), "machine": machine(), "prm": args.prm, "width": args.width,
           "precision": resolve_precision(default_device(), args.precision),
           "problems": {"seeds": args.seeds, "n_per_seed": args.n_problems}, "agg": "min", "policy": "solver", "rows": rows}
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "search_builtin.json", res)
    lines = ["| method | PRM's pick: accuracy (%) [95% CI] | majority vote (%) | PRM-weighted majority (%) | "
             "any final candidate correct (%) | final candidates correct (%) | within-problem AUROC | "
             "generated tokens / problem | PRM tokens / problem | s / problem |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        au = "" if r["within_problem_auroc"] is None else f"{r['within_problem_auroc']:.3f}"
        lines.append(f"| {name} | {100 * r['accuracy']:.1f} [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}] | "
                     f"{100 * r['majority_vote']:.1f} | {100 * r['weighted_majority']:.1f} | "
                     f"{100 * r['any_candidate_correct']:.1f} | {100 * r['candidates_correct']:.1f} | {au} | "
                     f"{r['generated_tokens']:.0f} | {r['prm_tokens']:.0f} | {r['wall_s_per_problem']:.1f} |")
    write_text(results / "search_builtin.md", "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for strategy in args.strategies:
            pts = [r for r in rows.values() if r["strategy"] == strategy and r["n"] > 1]
            ax.errorbar([p["generated_tokens"] for p in pts], [100 * p["accuracy"] for p in pts],
                        yerr=[[100 * (p["accuracy"] - p["ci"][0]) for p in pts],
                              [100 * (p["ci"][1] - p["accuracy"]) for p in pts]], marker="o", capsize=3, label=strategy)
        bon = [r for r in rows.values() if r["strategy"] == "best-of-n" and r["n"] > 1]
        ax.plot([p["generated_tokens"] for p in bon], [100 * p["majority_vote"] for p in bon], "k--", marker="x",
                label="majority vote (best-of-n samples)")
        one = rows["single sample"]
        ax.errorbar([one["generated_tokens"]], [100 * one["accuracy"]],
                    yerr=[[100 * (one["accuracy"] - one["ci"][0])], [100 * (one["ci"][1] - one["accuracy"])]],
                    marker="s", color="black", capsize=3, label="single sample")
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("generated tokens per problem")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"search on {len(args.seeds) * args.n_problems} built-in problems, implicit PRM, min step reward")
        ax.legend()
        fig.tight_layout()
        fig.savefig(results / "search_builtin.png", dpi=120)
    except ImportError:
        pass
    print(f"wrote {results / 'search_builtin.json'}")


if __name__ == "__main__":
    main()
