"""Does the surface of a built-in completion give its correctness away once the numbers are hidden?

    python experiments/surface_leak.py [--versions 2 1] [--n-problems 200] [--samples 16] [--seeds 777 1 2 ... 9]

Generates built-in data (default config otherwise, so balanced), masks the numbers in every completion and trains
a logistic regression (numpy, full-batch gradient descent, L2) on surface features of half the problems: binary
word/symbol unigrams and bigrams of the masked text (in >= 3 training completions) plus the length in steps and
characters (of the masked text). Reports the AUROC (rewards.auroc) of telling right from wrong on the other
half, pooled and as the mean within-problem AUROC (test problems holding both), for three maskings: "digits"
(every digit -> '#', so magnitudes stay visible), "numbers" (every run of digits -> one '#'; signs and operators
stay) and "style" (signed numbers -> '#', operator symbols and words -> 'op': only the wording is left), and for
the two lengths alone (digits mask). ~0.5 means no leak. The pooled AUROC also sees problem difficulty (longer
chains go wrong more often); the within-problem AUROC does not.

A held-out AUROC of a few hundred rows moves by a few hundredths by chance, so every cell is run on several data
seeds, and beside it a null: the same fit after shuffling the labels within each problem (so the share right per
problem, and with it difficulty, is kept, and only a surface-to-label link is destroyed). A leak is a gap between
the real and the null means that is large against their spreads. Writes experiments/results/surface_leak.json.
"""
from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from implicit_prm.core.io import write_json
from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts
from implicit_prm.rewards import auroc

OPS = re.compile(r"[-+*×/]|\b(?:add(?:ing)?|plus|increas(?:e|ing)|subtract(?:ing)?|minus|tak(?:e|ing)|away|from|"
                 r"decreas(?:e|ing)|multipl(?:y|ying)|times|groups|of|to|by)\b", re.IGNORECASE)
MASKS = {"digits": lambda t: re.sub(r"\d", "#", t), "numbers": lambda t: re.sub(r"\d+", "#", t),
         "style": lambda t: OPS.sub("op", re.sub(r"-?\d+", "#", t))}
TOKEN = re.compile(r"#+|[a-z]+|[^\sa-z#]")
MIN_DOCS = 3


def ngrams(text: str) -> set[str]:
    toks = TOKEN.findall(text.lower())
    return set(toks) | {f"{a} {b}" for a, b in zip(toks, toks[1:])}


def features(texts: list[str], masked: list[str], vocab: dict[str, int] | None, words: bool = True):
    """(X, vocab): binary n-gram presence (vocab built here when None) and standardisable lengths."""
    grams = [ngrams(m) for m in masked] if words else [set() for _ in masked]
    if vocab is None:
        docs = Counter(g for gs in grams for g in gs)
        vocab = {g: i for i, g in enumerate(sorted(g for g, c in docs.items() if c >= MIN_DOCS))}
    X = np.zeros((len(texts), len(vocab) + 2), dtype=np.float32)
    for r, gs in enumerate(grams):
        X[r, [vocab[g] for g in gs if g in vocab]] = 1.0
    X[:, -2] = [len(t.split("\n\n")) for t in texts]
    X[:, -1] = [np.log(len(m)) for m in masked]  # characters of the masked text: "numbers" hides digit counts
    return X, vocab


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, lr: float = 0.5, iters: int = 400) -> np.ndarray:
    """Weights (last = bias) of an L2-regularised logistic regression by full-batch gradient descent."""
    Xb = np.hstack([X, np.ones((len(X), 1), dtype=X.dtype)])
    w = np.zeros(Xb.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(Xb @ w, -30, 30)))
        grad = Xb.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0.0]
        w -= lr * grad
    return w


def within_problem_auroc(scores, labels, problem) -> float | None:
    vals = [auroc(scores[problem == p], labels[problem == p]) for p in np.unique(problem)]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate(texts, labels, problem, train, mask: str | None, lengths: bool = True) -> dict:
    """Fit on the training rows, score the others: pooled and within-problem AUROC. mask None = lengths only;
    lengths=False drops the two length features (steps, characters), leaving the words alone."""
    masked = [MASKS[mask or "digits"](t) for t in texts]
    Xtr, vocab = features([texts[i] for i in train], [masked[i] for i in train], None, words=mask is not None)
    test = np.setdiff1d(np.arange(len(texts)), train)
    Xte, _ = features([texts[i] for i in test], [masked[i] for i in test], vocab, words=mask is not None)
    mu, sd = Xtr[:, -2:].mean(0), Xtr[:, -2:].std(0) + 1e-6
    Xtr[:, -2:], Xte[:, -2:] = (Xtr[:, -2:] - mu) / sd, (Xte[:, -2:] - mu) / sd
    if not lengths:
        Xtr[:, -2:], Xte[:, -2:] = 0.0, 0.0
    w = fit_logistic(Xtr, labels[train])
    s = np.hstack([Xte, np.ones((len(Xte), 1), dtype=Xte.dtype)]) @ w
    y = labels[test]
    return {"auroc": auroc(s.tolist(), y.tolist()), "auroc_within_problem": within_problem_auroc(s, y, problem[test]),
            "train_auroc": auroc((np.hstack([Xtr, np.ones((len(Xtr), 1))]) @ w).tolist(), labels[train].tolist()),
            "n_features": int(Xtr.shape[1]), "n_train": int(len(train)), "n_test": int(len(test)),
            "test_share_correct": float(y.mean())}


CELLS = {"digits": ("digits", True), "numbers": ("numbers", True), "style": ("style", True),
         "lengths_only": (None, True), "style_without_lengths": ("style", False)}


def shuffled_within(labels: np.ndarray, problem: np.ndarray, seed: int) -> np.ndarray:
    """labels permuted within each problem (the null: same share right per problem, no link to the text)."""
    rng, out = np.random.default_rng(seed), labels.copy()
    for p in np.unique(problem):
        idx = np.flatnonzero(problem == p)
        out[idx] = rng.permutation(labels[idx])
    return out


def run_version(version: int, n_problems: int, samples: int, seed: int) -> dict:
    """{cell: {"real": evaluate(...), "null": evaluate(...) on labels shuffled within problems}} for one seed."""
    recs = generate_rollouts(BuiltinDataConfig(output="unused", n_problems=n_problems, samples_per_problem=samples,
                                               seed=seed, version=version))
    texts = [c for r in recs for c in r["completions"]]
    labels = np.array([int(bool(x)) for r in recs for x in r["correctness"]])
    problem = np.array([i for i, r in enumerate(recs) for _ in r["completions"]])
    order = np.random.default_rng(seed).permutation(n_problems)
    train = np.flatnonzero(np.isin(problem, order[: n_problems // 2]))
    null = shuffled_within(labels, problem, seed)
    return {cell: {"real": evaluate(texts, labels, problem, train, mask, lengths),
                   "null": evaluate(texts, null, problem, train, mask, lengths)}
            for cell, (mask, lengths) in CELLS.items()}


def summarise(per_seed: dict[int, dict]) -> dict:
    """Mean and standard deviation over seeds of each cell's pooled and within-problem AUROC, real and null."""
    out = {}
    for cell in CELLS:
        out[cell] = {}
        for kind in ("real", "null"):
            for metric in ("auroc", "auroc_within_problem"):
                vals = [r[cell][kind][metric] for r in per_seed.values() if r[cell][kind][metric] is not None]
                out[cell][f"{kind}_{metric}"] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1))
                                                 if len(vals) > 1 else None}
    return out


def print_table(summary: dict) -> None:
    print(f"{'version / cell':30s} {'within real':>14s} {'within null':>14s} {'pooled real':>14s} {'pooled null':>14s}")
    for version, cells in summary.items():
        for cell, v in cells.items():
            row = [v[f"{k}_{m}"] for m in ("auroc_within_problem", "auroc") for k in ("real", "null")]
            print(f"{version + ' ' + cell:30s} " + " ".join(
                f"{r['mean']:7.3f}±{r['sd'] if r['sd'] is not None else 0:.3f}".rjust(14) for r in row))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--n-problems", type=int, default=200)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[777, *range(1, 10)])
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "surface_leak.json"))
    args = ap.parse_args()
    result = {
        "command": " ".join(["python experiments/surface_leak.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seeds": args.seeds, "n_problems": args.n_problems, "samples_per_problem": args.samples,
        "n": args.n_problems * args.samples, "split": "half the problems (seeded permutation) train, half test",
        "features": f"binary word/symbol unigrams + bigrams of the masked text (in >= {MIN_DOCS} training "
                    "completions), steps and log characters (standardised); logistic regression, L2 1e-3, "
                    "400 full-batch gradient steps",
        "null": "labels shuffled within each problem, same split and fit",
    }
    per_seed = {f"v{v}": {s: run_version(v, args.n_problems, args.samples, s) for s in args.seeds}
                for v in args.versions}
    result["summary"] = {v: summarise(runs) for v, runs in per_seed.items()}
    result["per_seed"] = per_seed
    write_json(args.output, result)
    print_table(result["summary"])


if __name__ == "__main__":
    main()
