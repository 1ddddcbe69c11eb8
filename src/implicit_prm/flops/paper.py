"""The paper's FLOPs comparison recomputed analytically (`implicit-prm flops --paper`): data collection + training of
Math-Shepherd, AutoPSV and implicit DPO relative to implicit CE, at 2, 4 and 8 responses per instruction.

Yuan et al. 2024 (arXiv 2412.01981) report the ratios (`PAPER_RATIOS`) but not their formula, so every assumption
below was fixed, with its source, before anything was computed, and none was tuned to the paper's figures. The
`discussion` then measures how far each ratio lies from the paper's and which single assumption, moved alone,
brings it closest. FLOP conventions are the ledger's (`implicit_prm.flops.ledger`): forward 2P per token, full training 6P,
plus Kaplan et al.'s attention term over each token's causal context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .counting import ModelShape, causal_context_sum, token_flops

RESPONSES = (2, 4, 8)
METHODS = ("math_shepherd", "autopsv", "dpo")  # each relative to "ce"
PAPER_RATIOS = {"math_shepherd": [38.8, 38.6, 38.8], "autopsv": [4.3, 4.2, 4.3], "dpo": [0.3, 0.8, 1.8]}
PAPER_MATH_SHEPHERD_FLOPS = [0.67e20, 1.35e20, 2.7e20]
# Llama-3.1-8B-Instruct's config.json (huggingface.co/meta-llama/Llama-3.1-8B-Instruct): the policy, the
# Math-Shepherd completer and every PRM/ORM of the paper's comparison. P = 7.505e9 by `ModelShape.from_config`.
LLAMA31_8B = {"name": "Llama-3.1-8B-Instruct", "hidden_size": 4096, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
              "tie_word_embeddings": False}


@dataclass(frozen=True)
class Assumption:
    name: str
    value: float
    source: str
    alternatives: tuple = ()  # the values the sensitivity table tries; () = none (it cancels, or is structural)
    scan: tuple | None = None  # (lo, hi) bounds for the discussion's search of one value; None: alternatives only


def _half_double(v: float) -> tuple:
    return (v / 2, v * 2)


ASSUMPTIONS = (
    Assumption("instructions", 33_000, "Yuan et al. 2024, Sec. 4: 33K math instructions from UltraInteract "
               "(cancels in every ratio)"),
    Assumption("prompt_tokens", 150, "estimate: a competition math problem (~100 tokens) in Llama-3.1's chat "
               "template (~50 tokens with its system header)", _half_double(150), (10, 4000)),
    Assumption("response_tokens", 400, "estimate: a chain-of-thought solution of a MATH-level problem by "
               "Llama-3.1-8B-Instruct, a few hundred tokens", _half_double(400), (20, 8000)),
    Assumption("steps_per_response", 8, "estimate: one step per line or paragraph, ~50 tokens a step",
               _half_double(8), (1, 200)),
    Assumption("completions_per_step", 8, "Math-Shepherd (Wang et al. 2024, arXiv 2312.08935) samples N=8 "
               "completions per step; Yuan et al. follow it", _half_double(8), (1, 200)),
    Assumption("completion_fraction", 0.5, "estimate: a completion from the prefix ending at a step writes the rest "
               "of the response, on average half of it", (0.25, 1.0), (0.01, 1.0)),
    Assumption("shared_prefill", 1, "estimate: the N completions of one step share one prefill of its prefix "
               "(parallel sampling, e.g. vLLM n=N); 0: one prefill per completion", (0,)),
    Assumption("epochs", 1, "assumption, the same for every method (the paper's epoch count is not used here)",
               (2, 3), (0.25, 16)),
    Assumption("accuracy", 0.519, "Llama-3.1-8B-Instruct model card: MATH (0-shot, CoT) 51.9%; sets the implicit "
               "DPO pairs, E[c(n-c)] = n(n-1)a(1-a) for c ~ Binomial(n, a)", (0.2595, 0.7595), (0.01, 0.99)),
    Assumption("generation_counted", 1, "every method needs the n sampled responses per instruction, so their "
               "generation is data collection for all four; 0: left out", (0,)),
    Assumption("reference_counted", 1, "implicit CE/DPO need the reference's log-probs: one forward of the reference "
               "per trained sequence (cached across epochs); 0: left out", (0,)),
)
DEFAULTS = {a.name: a.value for a in ASSUMPTIONS}

FORMULA = [
    "L = prompt_tokens + response_tokens; fwd(T) = 2P T + 2 n_layer d_attn T(T+1)/2 (one forward of a T-token "
    "sequence; generating it with a KV cache costs the same); train(T) = 3 fwd(T) (full fine-tune, 6P)",
    "gen = generation_counted * fwd(L); ref = reference_counted * fwd(L); one response, per instruction x n:",
    "implicit CE    = n [gen + epochs train(L) + ref]",
    "implicit DPO   = n gen + 2 n(n-1) a(1-a) epochs train(L) + n (1 - a^n - (1-a)^n) ref   (every correct x "
    "incorrect pair trains both sides; the reference runs once per response of an instruction with a pair)",
    "Math-Shepherd  = n [gen + steps (k prefill(q) + N complete(c after q)) + epochs train(L)],  N = "
    "completions_per_step, c = completion_fraction response_tokens, q = L - c, k = 1 if shared_prefill else N",
    "AutoPSV        = n [gen + epochs train(L) (ORM) + fwd(L) (ORM confidence labels) + epochs train(L) (PRM)]",
    "all x instructions; P, n_layer, d_attn of Llama-3.1-8B-Instruct for every model; ratio = method / implicit CE",
]


def method_flops(a: dict, n: int, shape: ModelShape) -> dict[str, float]:
    """Data collection + training FLOPs of each method at n responses per instruction, under assumptions `a`."""
    def run(mode: str, tokens: float, start: float = 0.0) -> float:
        w, att = token_flops(mode, tokens, causal_context_sum(tokens, start), shape.params, shape.n_layer,
                             shape.d_attn)
        return w + att

    L = a["prompt_tokens"] + a["response_tokens"]
    gen, ref = a["generation_counted"] * run("forward", L), a["reference_counted"] * run("forward", L)
    train = a["epochs"] * run("train", L)
    c = a["completion_fraction"] * a["response_tokens"]
    q, N = L - c, a["completions_per_step"]
    label_step = (1 if a["shared_prefill"] else N) * run("forward", q) + N * run("generate", c, q)
    pairs = n * (n - 1) * a["accuracy"] * (1 - a["accuracy"])
    per = {"ce": n * (gen + train + ref),
           # every pair trains both sides; the reference runs once per response that is in some pair (cached)
           "dpo": n * gen + 2 * pairs * train + n * (1 - a["accuracy"] ** n - (1 - a["accuracy"]) ** n) * ref,
           "math_shepherd": n * (gen + a["steps_per_response"] * label_step + train),
           "autopsv": n * (gen + train + run("forward", L) + train)}
    return {m: a["instructions"] * f for m, f in per.items()}


def ratios(a: dict, shape: ModelShape) -> dict[str, list[float]]:
    by_n = [method_flops(a, n, shape) for n in RESPONSES]
    return {m: [f[m] / f["ce"] for f in by_n] for m in METHODS}


def distance(ours: list[float], paper: list[float]) -> float:
    """Mean |ln(ours / paper)| over the response counts: 0 = equal, ln 2 = a factor of 2 off on average."""
    return sum(abs(math.log(o / p)) for o, p in zip(ours, paper)) / len(paper)


def _best_single_change(method: str, shape: ModelShape) -> dict:
    """The one assumption value, moved alone (a grid of factors 1/16..16 within its bounds, or its alternatives),
    whose ratios come closest to the paper's for `method`."""
    best = None
    for asm in ASSUMPTIONS:
        values = list(asm.alternatives)
        if asm.scan:
            lo, hi = asm.scan
            values += [min(hi, max(lo, asm.value * 2 ** (k / 8))) for k in range(-32, 33)]
        for v in values:
            r = ratios({**DEFAULTS, asm.name: v}, shape)[method]
            d = distance(r, PAPER_RATIOS[method])
            if best is None or d < best["distance"] - 1e-12:
                best = {"assumption": asm.name, "value": v, "ratios": r, "distance": d}
    return best


def paper_comparison() -> dict:
    """Everything `flops --paper` writes: ratios beside the paper's, assumptions, formula, sensitivity, discussion."""
    shape = ModelShape.from_config(LLAMA31_8B)
    ours = ratios(DEFAULTS, shape)
    sensitivity = [{"assumption": asm.name, "value": v, "ratios": ratios({**DEFAULTS, asm.name: v}, shape)}
                   for asm in ASSUMPTIONS for v in asm.alternatives]
    discussion = {}
    for m in METHODS:
        rows = [(distance(s["ratios"][m], PAPER_RATIOS[m]), s) for s in sensitivity]
        d_alt, alt = min(rows, key=lambda t: t[0])
        best = _best_single_change(m, shape)
        factor = sum(o / p for o, p in zip(ours[m], PAPER_RATIOS[m])) / len(RESPONSES)
        discussion[m] = {
            "ours": ours[m], "paper": PAPER_RATIOS[m], "distance": distance(ours[m], PAPER_RATIOS[m]),
            "ours_over_paper": factor,
            "closest_alternative": {"assumption": alt["assumption"], "value": alt["value"], "ratios": alt["ratios"][m],
                                    "distance": d_alt},
            "best_single_change": best,
            "summary": (f"{m}: ours {_fmt(ours[m])} vs paper {_fmt(PAPER_RATIOS[m])} ({factor:.2f}x the paper's on "
                        f"average); of the sensitivity rows, {alt['assumption']}={alt['value']:g} comes closest "
                        f"({_fmt(alt['ratios'][m])}); moving one assumption alone, {best['assumption']}="
                        f"{best['value']:.4g} comes closest ({_fmt(best['ratios'])}, still "
                        f"{math.exp(best['distance']):.2f}x off on average)"),
        }
    totals = [method_flops(DEFAULTS, n, shape) for n in RESPONSES]
    implied = [f / r for f, r in zip(PAPER_MATH_SHEPHERD_FLOPS, PAPER_RATIOS["math_shepherd"])]
    ce = [t["ce"] for t in totals]
    discussion["ce"] = {"ours_flops": ce, "paper_implied_flops": implied,  # the paper's Math-Shepherd total / ratio
                        "summary": f"implicit CE: ours {'/'.join(f'{f:.3g}' for f in ce)} FLOPs vs "
                                   f"{'/'.join(f'{f:.3g}' for f in implied)} implied by the paper (its Math-Shepherd "
                                   f"totals over its ratios): {sum(ce) / sum(implied):.2f}x"}
    return {"schema": "implicit-prm/flops-paper/v1", "responses_per_instruction": list(RESPONSES),
            "model": {"name": shape.name, "params": shape.params, "n_layer": shape.n_layer, "d_attn": shape.d_attn},
            "ratios": ours, "paper_ratios": PAPER_RATIOS,
            "flops": {m: [t[m] for t in totals] for m in ("ce", *METHODS)},
            "paper_math_shepherd_flops": PAPER_MATH_SHEPHERD_FLOPS,
            "assumptions": [{"name": a.name, "value": a.value, "source": a.source} for a in ASSUMPTIONS],
            "formula": FORMULA, "sensitivity": sensitivity, "discussion": discussion}


def _fmt(xs: list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in xs)


def paper_markdown(res: dict) -> str:
    ns = res["responses_per_instruction"]
    out = ["Data collection + training FLOPs relative to implicit CE (Yuan et al. 2024), recomputed", "", "Formula:"]
    out += [f"    {line}" for line in res["formula"]]
    out += ["", "| assumption | value | source |", "|---|---|---|"]
    out += [f"| {a['name']} | {a['value']:g} | {a['source']} |" for a in res["assumptions"]]
    out += ["", "| method | " + " | ".join(f"ours n={n}" for n in ns) + " | paper (n=" + "/".join(map(str, ns))
            + ") |", "|---|" + "---|" * (len(ns) + 1)]
    out += [f"| {m} | " + " | ".join(f"{r:.2f}" for r in res["ratios"][m]) + f" | {_fmt(res['paper_ratios'][m])} |"
            for m in METHODS]
    ms = res["flops"]["math_shepherd"]
    out += ["", f"Math-Shepherd total FLOPs: ours {'/'.join(f'{f:.3g}' for f in ms)}, paper "
            f"{'/'.join(f'{f:.3g}' for f in res['paper_math_shepherd_flops'])}", "",
            "Sensitivity (one assumption moved, the rest at their values; ratios at n=" + "/".join(map(str, ns)) + ")",
            "", "| assumption | value | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    out += [f"| {s['assumption']} | {s['value']:g} | " + " | ".join(_fmt(s["ratios"][m]) for m in METHODS) + " |"
            for s in res["sensitivity"]]
    out += ["", "Discussion:"] + [f"- {d['summary']}" for d in res["discussion"].values()]
    return "\n".join(out)
