"""Incremental implicit scoring during search against re-scoring every partial solution with `score`'s machinery.

A beam search round extends each of B beams by one step and scores the new partial solutions. Re-scoring runs
prompt + all k steps of each beam through the PRM and the reference at round k (ImplicitPRM.score_encoded: length
batches, the prompt computed once per batch, the log-prob cache on); incremental scoring runs only the new step's
tokens (plus the one re-tokenized join token), continuing from each beam's KV caches. Over K rounds re-scoring
runs about B * (P + L K (K + 1) / 2) tokens per model against B * (P + K (L + 1)) incrementally (prompt P, step
L tokens), so the token ratio predicts the speed-up; both are printed, with the rewards' largest difference.

Setup: SmolLM2-135M as the PRM and a seeded perturbed copy as its reference (two full models, like a full
fine-tune), built-in problems with K-step chains, the steps written by the simulated solver. Model loading is
outside every timing; each timing is the fastest of --repeats.

    python benchmarks/search_incremental.py [--steps 8] [--beams 4] [--problems 2] [--precision auto]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from common import perturbed_copy, save

from implicit_prm.data.chains import make_problem
from implicit_prm.data.solver import make_profile, solve_v2
from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.search.scoring import IncrementalImplicitScorer, WholeTextScorer
from implicit_prm.search.strategies import Node, Proposal


def beams_for(n_problems: int, n_beams: int, n_steps: int, seed: int = 0):
    """[(prompt, [steps of each beam])]: solver samples of K-step built-in problems."""
    rng = random.Random(seed)
    out = []
    for p in range(n_problems):
        problem = make_problem(rng, n_steps, n_steps)
        profile = make_profile(problem, seed)
        out.append((problem.prompt, [solve_v2(problem, profile, random.Random(f"b:{p}:{b}"), f"{p}:{b}").steps
                                     for b in range(n_beams)]))
    return out


def run_rounds(scorer, prompt: str, beams: list[list[str]], ids: bool = False) -> tuple[float, list[list[float]]]:
    """Seconds to score every round of the beams (each extended by its next step per round); final rewards.
    ids=True hands each step over as its own token ids (tokenized alone, as an LM policy's tokens come)."""
    t0 = time.perf_counter()
    root = Node(-1, None, [], [], False, None, scorer.root(prompt))
    nodes = [root] * len(beams)
    for k in range(max(len(b) for b in beams)):
        idx = [i for i, b in enumerate(beams) if k < len(b)]
        props = []
        for i in idx:
            done = k == len(beams[i]) - 1
            text = beams[i][k]
            step_ids = scorer.tok.encode(text + ("" if done else scorer.sep), add_special_tokens=False) if ids else None
            props.append(Proposal(text, done, None, 0, step_ids))
        got = scorer.extend(prompt, [nodes[i] for i in idx], props)
        for i, p, (rewards, state) in zip(idx, props, got):
            nodes[i] = Node(k, None, nodes[i].steps + [p.text], rewards, p.done, None, state)
    return time.perf_counter() - t0, [n.rewards for n in nodes]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--problems", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ref = perturbed_copy(args.model, tmp / "ref", 0.01, seed=1)
    kw = dict(ref=ref, beta=0.05, precision=args.precision, device="cpu", logprob_cache=str(tmp / "cache.sqlite"))
    prm = ImplicitPRM.from_pretrained(args.model, **kw)
    data = beams_for(args.problems, args.beams, args.steps)
    times = {"incremental": [], "rescore": []}
    diffs, tokens = [], {"incremental": 0, "rescore": 0}
    for rep in range(args.repeats):
        for name in times:
            total, finals = 0.0, []
            scorer = IncrementalImplicitScorer(prm) if name == "incremental" else WholeTextScorer(prm)
            for prompt, beams in data:
                if name == "rescore":  # a fresh cache per repeat: re-scoring never meets the same partial text twice
                    prm.logprob_cache = str(tmp / f"cache{rep}.sqlite")
                s, rewards = run_rounds(scorer, prompt, beams)
                total += s
                finals.append(rewards)
            times[name].append(total)
            tokens[name] = scorer.prm_tokens
            if name == "rescore":
                last_rescore = finals
            else:
                last_inc = finals
        for a, b in zip(last_inc, last_rescore):
            diffs += [float(np.max(np.abs(np.array(x) - np.array(y)))) for x, y in zip(a, b)]
    best = {k: min(v) for k, v in times.items()}
    # steps as separately tokenized ids (an LM policy's own tokens) against the text re-tokenized as `score` does
    tok_diff, q_diff = [], []
    for (prompt, beams), text_rewards in zip(data, last_inc):
        _, id_rewards = run_rounds(IncrementalImplicitScorer(prm), prompt, beams, ids=True)
        for a, b in zip(id_rewards, text_rewards):
            tok_diff.append(float(np.max(np.abs(np.array(a) - np.array(b)))))
            q_diff.append(abs(sum(a) - sum(b)))
    result = {"setup": {"model": args.model, "steps": args.steps, "beams": args.beams, "problems": args.problems,
                        "precision": prm.precision, "repeats": args.repeats},
              "seconds": best, "speedup": best["rescore"] / best["incremental"],
              "model_tokens": tokens, "token_ratio": tokens["rescore"] / max(tokens["incremental"], 1),
              "max_abs_reward_diff": max(diffs),
              "ids_vs_retokenized_text": {"max_abs_step_reward_diff": max(tok_diff),
                                          "max_abs_final_q_diff": max(q_diff)}}
    print(f"{args.problems} problems x {args.beams} beams x {args.steps} steps ({prm.precision}):")
    print(f"  re-scoring whole partial solutions: {best['rescore']:.2f} s, {tokens['rescore']} model tokens")
    print(f"  incremental (KV caches):            {best['incremental']:.2f} s, {tokens['incremental']} model tokens")
    print(f"  speed-up {result['speedup']:.2f}x (token ratio {result['token_ratio']:.2f}x); largest reward "
          f"difference {result['max_abs_reward_diff']:.2e}")
    print(f"  steps as their own token ids against the re-tokenized text: step rewards differ by up to "
          f"{max(tok_diff):.3g}, final q-values by up to {max(q_diff):.3g} (beta 0.05)")
    save("search_incremental", result)


if __name__ == "__main__":
    main()
