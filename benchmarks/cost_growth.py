"""How scoring cost grows: time per token as the response length grows (256 to 8192), and as N (responses per
prompt) grows, for one model's log-prob pass (scoring runs two: the PRM and, unless cached, the reference).

Length: responses of random tokens after a short chat prompt, about `--tokens` tokens per length (one batch plan
from `length_batches`, as `implicit-prm score` uses). N: one built-in problem with N sampled solutions.
Also prints the analytic FLOPs split per token (weights vs attention) to show where attention's quadratic term
takes over.

    python benchmarks/cost_growth.py [--lengths 256 512 1024 2048 4096 8192] [--ns 1 4 16 64]
"""
from __future__ import annotations

import argparse
import time

import torch
from common import builtin_items, save

from implicit_prm.models.loading import load_model, load_tokenizer
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.scoring.forward import response_logprobs
from implicit_prm.steps.encoding import Encoded, Encoder
from implicit_prm.steps.splitting import spans_from_steps


def timed(model, encs, pad_id, batch_tokens) -> float:
    t = time.perf_counter()
    response_logprobs(model, encs, pad_id, "cpu", "fp32", batch_tokens, show=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    ap.add_argument("--tokens", type=int, default=8192, help="response tokens per length point")
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--batch-tokens", type=int, default=8192)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model).eval()
    cfg = lm.config
    cfg.max_position_embeddings = max(cfg.max_position_embeddings, max(args.lengths) + 256)
    model = TokenLogProbs(lm)
    tok = load_tokenizer(args.model)
    enc = Encoder(tok, system_prompt="", max_length=10**6)
    prompt = enc.prompt_ids("Score this response.")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    n_params = sum(p.numel() for p in lm.parameters())
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    timed(model, [Encoded(prompt, list(range(100, 164)), [0] * 64, 1, False, [(0, 1)])], pad, args.batch_tokens)

    by_length = []
    print(f"{'length':>7s} {'seqs':>5s} {'ms/token':>9s} {'x first':>9s} {'attention FLOPs share':>22s}")
    for L in args.lengths:
        n = max(1, args.tokens // L)
        encs = [Encoded(prompt, torch.randint(0, cfg.vocab_size, (L,)).tolist(), [0] * L, 1, False, [(0, 1)])
                for _ in range(n)]
        s = timed(model, encs, pad, max(args.batch_tokens, L + len(prompt)))
        per_tok = s / (n * L) * 1000
        # Per token, causal attention does about 2 * position * d multiply-adds per layer (QK^T and AV),
        # i.e. 4 * (L/2) * d * layers FLOPs on average; the weights do about 2 * params FLOPs.
        att = 2 * (L + len(prompt)) * d * layers
        share = att / (att + 2 * n_params)
        by_length.append({"length": L, "sequences": n, "seconds": s, "ms_per_token": per_tok,
                          "attention_flops_share": share})
        print(f"{L:7d} {n:5d} {per_tok:9.2f} {per_tok / by_length[0]['ms_per_token']:9.2f} {share:22.2f}",
              flush=True)

    by_n = []
    print(f"\n{'N':>4s} {'tokens':>7s} {'s':>7s} {'ms/token':>9s} {'s/response':>11s}")
    for N in args.ns:
        items = builtin_items(1, N, seed=5)
        encs = [enc.encode(it.prompt, it.response, spans_from_steps(it.steps, "\n\n")) for it in items]
        s = timed(model, encs, pad, args.batch_tokens)
        n_tok = sum(len(e.response_ids) for e in encs)
        by_n.append({"n": N, "response_tokens": n_tok, "seconds": s, "ms_per_token": s / n_tok * 1000,
                     "s_per_response": s / N})
        print(f"{N:4d} {n_tok:7d} {s:7.2f} {s / n_tok * 1000:9.2f} {s / N:11.3f}", flush=True)
    cross = 2 * n_params / (2 * d * layers)
    print(f"\nanalytic: attention FLOPs equal the weights' FLOPs per token at a context of about {cross:.0f} tokens")
    save("cost_growth", {"params": n_params, "by_length": by_length, "by_n": by_n,
                         "attention_equals_weights_at_context": cross})


if __name__ == "__main__":
    main()
