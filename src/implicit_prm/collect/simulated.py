"""Ledgers for text no model generated: the simulated solver's responses and Monte-Carlo completions are counted as
if the policy model of the run had generated them (by default the embedded SmolLM2-135M-Instruct, whose tokenizer
measures the tokens)."""
from __future__ import annotations

import functools
from typing import Iterable

from ..flops.counting import SMOLLM2_135M, ModelShape
from ..flops.ledger import Ledger
from ..models.chat import chat_text
from ..models.loading import DEFAULT_MODEL, _embedded_gguf, cache_root


@functools.lru_cache(maxsize=None)
def policy_tokenizer():
    """The embedded model's tokenizer: from its converted copy when the cache has one, else read from the GGUF
    file's metadata alone (no dequantizing of the weights)."""
    from transformers import AutoTokenizer


    converted = cache_root() / "models" / DEFAULT_MODEL
    if (converted / "config.json").exists():
        return AutoTokenizer.from_pretrained(converted)
    gguf = _embedded_gguf(DEFAULT_MODEL)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def generation_counts(tok, groups: Iterable[tuple[str, list[str]]]) -> list[list[int]]:
    """[context tokens, generated tokens of each sample] per group (context: the full text before the samples,
    chat template and any step prefix included; the samples share its prefill)."""
    out = []
    for context, samples in groups:
        ids = tok([context, *samples], add_special_tokens=False)["input_ids"]
        out.append([len(x) for x in ids])
    return out


def add_counts(ledger: Ledger, counts: Iterable[list[int]], kind: str = "generation") -> Ledger:
    """Record each group: one prefill of its context, then its samples' generated tokens."""
    for context, *generated in counts:
        for j, n in enumerate(generated):
            ledger.add_generation(context, n, prefill=j == 0, kind=kind)
    return ledger


def simulated_ledger(command: str, groups: Iterable[tuple[str, list[str]]], system_prompt: str | None = None,
                     method: str | None = None) -> Ledger:
    """The ledger of `groups` (user message, samples) as SmolLM2-135M-Instruct generating each group's samples
    from its chat template (with the template's default system prompt unless `system_prompt` is given)."""

    tok = policy_tokenizer()
    counts = generation_counts(tok, [(chat_text(tok, p, system_prompt), s) for p, s in groups])
    return add_counts(Ledger.simulated_policy(command, ModelShape.from_config(SMOLLM2_135M), method=method), counts)
