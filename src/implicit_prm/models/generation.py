"""Sampling continuations from a causal LM with HF generate."""
from __future__ import annotations

import torch


def generate(model, tok, texts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int,
             seed: int, stop: list[str] | None = None) -> tuple[list[str], int]:
    """n sampled continuations of each of `texts` (len(texts) * n decoded strings, text by text; temperature 0 =
    greedy: one decode per text, repeated n times, as generate refuses several greedy sequences) and the number of
    generated tokens. `tok` must pad on the left; torch is seeded with `seed` first."""
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)
    sample = temperature > 0
    with torch.no_grad():
        gen = model.generate(**enc, do_sample=sample, temperature=temperature if sample else None,
                             top_p=top_p if sample else None, max_new_tokens=max_new_tokens,
                             num_return_sequences=n if sample else 1, pad_token_id=tok.pad_token_id,
                             stop_strings=stop or None, tokenizer=tok if stop else None)
    new = gen[:, enc["input_ids"].shape[1]:]  # (B * n, new); greedy: (B, new)
    if not sample and n > 1:
        new = new.repeat_interleave(n, dim=0)  # (B * n, new), each text's decode n times
    return tok.batch_decode(new, skip_special_tokens=True), int((new != tok.pad_token_id).sum())
