"""bf16 scoring on a CPU with the linear layers stored in bf16 (models.loading.inference_linears) against bf16
autocast over the fp32 weights, in one process on the same responses: time and the largest log-prob difference.

The embedded SmolLM2-135M scores built-in problems with N sampled solutions each (the best-of-N shape), through
scoring.forward.response_logprobs (the loop `implicit-prm score` runs). Each timing is the faster of --repeats.

    python benchmarks/inference_linears.py [--problems 4] [--n 16] [--repeats 2] [--model smollm2-135m]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from common import builtin_items, save

from implicit_prm.models.loading import DEFAULT_MODEL, inference_linears, load_model, load_tokenizer
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.scoring.forward import response_logprobs
from implicit_prm.steps.encoding import Encoder
from implicit_prm.steps.splitting import spans_from_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--n", type=int, default=16, help="solutions per problem")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    items = builtin_items(args.problems, args.n, seed=5)
    tok = load_tokenizer(args.model)
    encoder = Encoder(tok)
    encs = [encoder.encode(it.prompt, "\n\n".join(it.steps), spans_from_steps(it.steps, "\n\n")) for it in items]
    model = TokenLogProbs(load_model(args.model, attn_implementation="auto", device="cpu")).eval()
    model.requires_grad_(False)

    def timed() -> tuple[list, float]:
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = response_logprobs(model, encs, tok.pad_token_id or 0, "cpu", "bf16", show=False)
            best = min(best, time.perf_counter() - t)
        return out, best

    fp32_out, fp32_s = timed()
    n_cast = inference_linears(model.lm, "cpu", "bf16")
    bf16_out, bf16_s = timed()
    tokens = sum(len(e.response_ids) for e in encs)
    row = {"responses": len(encs), "response_tokens": tokens, "linears_cast": n_cast,
           "fp32_weights_s": fp32_s, "bf16_linears_s": bf16_s, "speedup": fp32_s / bf16_s,
           "fp32_weights_tokens_per_s": tokens / fp32_s, "bf16_linears_tokens_per_s": tokens / bf16_s,
           "max_abs_logprob_diff": max(float(np.abs(a - b).max()) for a, b in zip(fp32_out, bf16_out))}
    print(f"{len(encs)} responses, {tokens} tokens: autocast over fp32 weights {fp32_s:.2f} s, bf16 linears "
          f"{bf16_s:.2f} s ({row['speedup']:.2f}x); max |log-prob difference| {row['max_abs_logprob_diff']}")
    save("inference_linears", {"model": args.model, "precision": "bf16", "problems": args.problems,
                               "n": args.n, **row})


if __name__ == "__main__":
    main()
