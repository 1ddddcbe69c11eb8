"""Does the model know the arithmetic the built-in data's mistakes break, before and after implicit-PRM training?

300 one-operation sentences in the built-in solver's style, "We start from a. We compute a op b = c. The running
total is c.", each beside the same sentence with c moved by 1 to 10 (the size of the built-in data's slips), for
+, - and * with a in 2-60 and b in 2-20 (2-5 for *), drawn with seed 0. For the reference model: how often the
correct sentence has the higher log-probability. For each trained PRM given: how often its implicit reward, the
log-ratio log pi_theta / pi_ref summed over the sentence (beta > 0 does not change the order), is higher for the
correct sentence than for the wrong one, and how often pi_theta itself prefers the correct sentence. fp32, eager
attention, no chat template.

Usage:  python experiments/arithmetic_probe.py [PRM_DIR ...] [--out experiments/results/arithmetic_probe.json]
"""
from __future__ import annotations

import argparse
import datetime
import random
import sys

import torch

from implicit_prm.core.io import write_json
from implicit_prm.core.results import machine
from implicit_prm.models.loading import DEFAULT_MODEL, load_model, resolve
from implicit_prm.models.logprobs import TokenLogProbs

TEMPLATE = "We start from {a}. We compute {a} {op} {b} = {c}. The running total is {c}."
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def sentence_pairs(n: int = 300, seed: int = 0) -> list[tuple[str, str, str]]:
    """(op, correct sentence, wrong sentence) with the result moved by +-1..10."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        op = rng.choice(list(OPS))
        a, b = rng.randint(2, 60), rng.randint(2, 5) if op == "*" else rng.randint(2, 20)
        c, d = OPS[op](a, b), rng.choice([-1, 1]) * rng.randint(1, 10)
        out.append((op, TEMPLATE.format(a=a, op=op, b=b, c=c), TEMPLATE.format(a=a, op=op, b=b, c=c + d)))
    return out


@torch.no_grad()
def sentence_logprobs(spec: str, texts: list[str], batch: int = 50) -> torch.Tensor:
    """Summed log-probability of each text (after its first token) under the model or adapter `spec`."""
    from transformers import AutoTokenizer

    model = TokenLogProbs(load_model(spec, dtype=torch.float32, attn_implementation="eager")).eval()
    tok = AutoTokenizer.from_pretrained(resolve(DEFAULT_MODEL))
    tok.padding_side = "right"
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], return_tensors="pt", padding=True)
        lp = model(enc.input_ids, enc.attention_mask)  # (B, T-1): log p of tokens 1.. (the product's own path)
        out.append((lp * enc.attention_mask[:, 1:]).sum(-1))
    return torch.cat(out)


def prefers(good: torch.Tensor, bad: torch.Tensor, ops: list[str]) -> dict:
    won = (good > bad).float()
    return {"all": float(won.mean()), **{op: float(won[[o == op for o in ops]].mean()) for op in OPS}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prms", nargs="*", help="trained PRM folders (LoRA adapters on the embedded model)")
    ap.add_argument("--out", default="experiments/results/arithmetic_probe.json")
    args = ap.parse_args(argv)
    pairs = sentence_pairs()
    ops, texts = [p[0] for p in pairs], [p[1] for p in pairs] + [p[2] for p in pairs]
    n = len(pairs)
    ref = sentence_logprobs(DEFAULT_MODEL, texts)
    result = {"n_pairs": n, "template": TEMPLATE, "reference_prefers_correct": prefers(ref[:n], ref[n:], ops),
              "prms": {}, "date": datetime.date.today().isoformat(), "machine": machine(), "precision": "fp32"}
    for prm in args.prms:
        pol = sentence_logprobs(prm, texts)
        reward = pol - ref
        result["prms"][prm] = {"reward_prefers_correct": prefers(reward[:n], reward[n:], ops),
                               "policy_prefers_correct": prefers(pol[:n], pol[n:], ops)}
    write_json(args.out, result)
    print(f"reference prefers the correct sentence: {result['reference_prefers_correct']}")
    for prm, r in result["prms"].items():
        print(f"{prm}: reward prefers correct {r['reward_prefers_correct']}, policy {r['policy_prefers_correct']}")


if __name__ == "__main__":
    sys.exit(main())
