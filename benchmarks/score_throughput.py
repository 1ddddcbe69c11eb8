"""Scoring throughput and the reference cache: implicit-prm against the naive algorithm, in one process.

For each data set (ProcessBench gsm8k+math solutions; built-in problems with N sampled solutions each) it times:
- naive: the reference implementation's algorithm (see common.py): per-step prefix re-tokenization, input-order
  padded batches, PRM and reference forward on every batch with a full-vocabulary log_softmax;
- implicit-prm, cold: `ImplicitPRM.score_encoded` with an empty reference cache (reference pass, then PRM pass);
- implicit-prm, warm: the same responses scored by another PRM checkpoint, the reference log-probs now cached;
- the bound: the two models' plain forwards over the same number of tokens packed into full, unpadded rows.

The PRMs are SmolLM2-135M with small seeded noise on every weight (full models, like a full fine-tune); the
reference is SmolLM2-135M. Model loading is outside every timing. Every timing is repeated (--repeats) and the
fastest kept, since other jobs on a shared machine only ever add time. Same dtype (fp32) throughout; `--precision auto` of
the product resolves to fp32 on CPUs without native bf16, so there the overall ratio equals the same-dtype ratio.

    python benchmarks/score_throughput.py [--pb-per-split 16] [--builtin-problems 16] [--builtin-n 8]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import builtin_items, dense_bound, flops_per_token, naive_score, perturbed_copy, processbench_items, save

from implicit_prm.core.precision import resolve_precision
from implicit_prm.models.loading import load_model, load_tokenizer, resolve
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.steps.batching import batch_plan
from implicit_prm.steps.encoding import Encoder
from implicit_prm.steps.splitting import spans_from_steps

BETA = 0.05


def ours(prm_dir: str, ref: str, items, cache: Path, batch_tokens: int, dtype: str) -> tuple[list, float]:
    prm = ImplicitPRM.from_pretrained(prm_dir, ref=ref, beta=BETA, precision=dtype, logprob_cache=str(cache),
                                      system_prompt="", batch_tokens=batch_tokens, device="cpu")
    _ = prm.own_key  # the weight fingerprint is computed once per loaded PRM, not per call: leave it out
    t = time.perf_counter()
    encs = [prm.encoder.encode(it.prompt, it.response, spans_from_steps(it.steps, "\n\n")) for it in items]
    recs = prm.score_encoded(encs)
    return [r["step_rewards"] for r in recs], time.perf_counter() - t


def flop_ratio(items, enc: Encoder, model, batch_size: int, batch_tokens: int) -> float:
    """The speed-up over naive that FLOP counts predict for a cold run on these items (attention left out).

    Per token the decoder costs f_t = 2 x its matmul parameters, the LM head f_h = 2 x H x V. Naive: two models
    over every padded position of input-order batches, head included. Ours: two passes over the distinct
    responses in our batch plan: the decoder over each batch's padded tokens (a shared batch: its prompt once plus
    its padded responses), the head over response tokens only.
    """
    f_t, f_h = flops_per_token(model.config)
    encs = [enc.encode(it.prompt, it.response, spans_from_steps(it.steps, "\n\n")) for it in items]
    naive = sum(len(chunk) * max(len(e) for e in chunk) * (f_t + f_h)
                for chunk in (encs[s:s + batch_size] for s in range(0, len(encs), batch_size)))
    distinct = list({(tuple(e.prompt_ids), tuple(e.response_ids)): e for e in encs}.values())
    ours = 0
    for shared, idx in batch_plan(distinct, batch_tokens, 16, True, TokenLogProbs(model).attention_context):
        batch = [distinct[i] for i in idx]
        longest = max(len(e.response_ids) for e in batch) if shared else max(len(e) for e in batch)
        decoder_tokens = len(batch) * longest + (len(batch[0].prompt_ids) if shared else 0)
        ours += decoder_tokens * f_t + sum(len(e.response_ids) for e in batch) * f_h
    return naive / ours  # both sides run two models' worth: naive two per batch, ours two passes


def run_set(name: str, items, base: str, prm_a: str, prm_b: str, args, tmp: Path) -> dict:
    tok = load_tokenizer(base)
    enc = Encoder(tok, system_prompt="")
    prompt_text = lambda q: tok.decode(enc.prompt_ids(q))  # noqa: E731 - the same chat-formatted prompt as ours
    n_tokens = sum(len(enc.prompt_ids(it.prompt)) + len(tok(it.response, add_special_tokens=False)["input_ids"])
                   for it in items)
    n_unique = len({(it.prompt, it.response) for it in items})
    print(f"\n[{name}] {len(items)} responses ({n_unique} distinct), {n_tokens} tokens", flush=True)

    policy, ref = load_model(prm_a).eval(), load_model(base).eval()
    row_len = max(16, round(n_tokens / len(items)))
    naive_runs, bound_runs, cold_runs, warm_runs = [], [], [], []
    # Each timing is repeated and the fastest kept: other jobs on a shared machine only ever add time.
    for rep in range(args.repeats):
        t = time.perf_counter()
        naive_rewards, naive_t = naive_score(policy, ref, tok, items, args.batch_size, BETA, prompt_text)
        naive_runs.append(time.perf_counter() - t)
        print(f"[{name}] naive: {naive_runs[-1]:.1f} s ({naive_t['tokenize_s']:.2f} s re-tokenizing step prefixes)",
              flush=True)
        bound_runs.append(dense_bound([policy, ref], n_tokens, row_len, max(1, args.batch_tokens // row_len),
                                      policy.config.vocab_size))
        print(f"[{name}] bound (2 dense forwards, rows of {row_len}): {bound_runs[-1]:.1f} s", flush=True)
        cache = tmp / f"{name}.{rep}.sqlite"
        our_rewards, cold = ours(prm_a, base, items, cache, args.batch_tokens, "fp32")
        cold_runs.append(cold)
        print(f"[{name}] implicit-prm cold cache: {cold:.1f} s", flush=True)
        _, warm = ours(prm_b, base, items, cache, args.batch_tokens, "fp32")
        warm_runs.append(warm)
        print(f"[{name}] implicit-prm, new checkpoint, warm reference cache: {warm:.1f} s", flush=True)
    flops = flop_ratio(items, enc, policy, args.batch_size, args.batch_tokens)
    del policy, ref
    naive_total, bound, cold, warm = min(naive_runs), min(bound_runs), min(cold_runs), min(warm_runs)
    auto = resolve_precision(torch.device("cpu"), "auto")
    if auto != "fp32":
        _, cold_auto = ours(prm_a, base, items, tmp / f"{name}.auto.sqlite", args.batch_tokens, "auto")
    else:
        cold_auto = cold

    diffs = [abs(a - b) for x, y in zip(naive_rewards, our_rewards) for a, b in zip(x, y)
             if len(x) == len(y)]
    return {
        "responses": len(items), "distinct_responses": n_unique, "tokens": n_tokens,
        "naive_s": naive_total, "naive_tokenize_s": naive_t["tokenize_s"], "bound_s": bound, "bound_row_len": row_len,
        "runs_s": {"naive": naive_runs, "bound": bound_runs, "ours_cold": cold_runs, "ours_warm_cache": warm_runs},
        "ours_cold_s": cold, "ours_warm_cache_s": warm, "ours_auto_dtype": auto, "ours_auto_s": cold_auto,
        "tokens_per_s": {"naive": n_tokens / naive_total, "ours_cold": n_tokens / cold,
                         "ours_warm_cache": n_tokens / warm, "bound": n_tokens / bound},
        "speedup_same_dtype": naive_total / cold, "speedup_overall": naive_total / cold_auto,
        "flop_count_ratio": flops,
        "fraction_of_bound": bound / cold, "cache_speedup": cold / warm,
        "step_reward_max_abs_diff_vs_naive": float(np.max(diffs)) if diffs else None,
        "steps_compared": len(diffs),
        # The sum over steps does not depend on which step a separator token is counted in: it must agree.
        "total_reward_max_abs_diff_vs_naive": float(max(abs(sum(x) - sum(y))
                                                        for x, y in zip(naive_rewards, our_rewards))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pb-per-split", type=int, default=16, help="ProcessBench solutions from each of gsm8k, math")
    ap.add_argument("--builtin-problems", type=int, default=16)
    ap.add_argument("--builtin-n", type=int, default=8, help="sampled solutions per built-in problem")
    ap.add_argument("--batch-size", type=int, default=8, help="naive: sequences per batch, in input order")
    ap.add_argument("--batch-tokens", type=int, default=8192, help="ours and the bound: tokens per batch")
    ap.add_argument("--only", choices=["processbench", "builtin"], default=None)
    ap.add_argument("--repeats", type=int, default=2, help="time everything this many times, keep the fastest")
    args = ap.parse_args()
    torch.manual_seed(0)
    base = resolve(args.model)
    tmp = Path(tempfile.mkdtemp())
    prm_a = perturbed_copy(base, tmp / "prm_a", 0.02, 1)
    prm_b = perturbed_copy(base, tmp / "prm_b", 0.02, 2)
    sets = {"processbench": lambda: processbench_items(args.pb_per_split),
            "builtin": lambda: builtin_items(args.builtin_problems, args.builtin_n, seed=3)}
    results = {}
    for name, make in sets.items():
        if args.only in (None, name):
            results[name] = run_set(name, make(), base, prm_a, prm_b, args, tmp)

    print(f"\n{'data':14s} {'naive tok/s':>11s} {'ours tok/s':>10s} {'x naive':>8s} {'FLOP ratio':>10s} "
          f"{'of bound':>9s} {'warm tok/s':>10s} {'warm x cold':>11s}")
    for name, r in results.items():
        tps = r["tokens_per_s"]
        print(f"{name:14s} {tps['naive']:11.1f} {tps['ours_cold']:10.1f} {r['speedup_same_dtype']:8.2f} "
              f"{r['flop_count_ratio']:10.2f} {r['fraction_of_bound']:9.2f} {tps['ours_warm_cache']:10.1f} "
              f"{r['cache_speedup']:11.2f}")
    save("score_throughput", {"goals": {"speedup_same_dtype": 2.0, "fraction_of_bound": 0.8, "cache_speedup": 1.8},
                              "dtype": "fp32", "beta": BETA, "results": results})


if __name__ == "__main__":
    main()
