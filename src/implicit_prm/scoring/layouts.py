"""The exact input layout of each released PRM family: the text its model card builds, tokenized as the card does,
and the positions whose output is read (one per step). Each returns an Encoded whose `tag_positions` index
`response_ids` (the whole sequence; `prompt_ids` is empty), so every format is batched and read alike.

| format | text (model card) | read at | token ids from |
|---|---|---|---|
| math-shepherd | f"{question} {step_1} ки\\n{step_2} ки..." with the tokenizer's BOS | every `ки` | `encode("+ -")` after BOS; `encode("ки")[-1]` |
| rlhflow | chat: user = question + " " + step_1, assistant "+", user = step_2, assistant "+", ... | the token before each assistant "+" | `encode("+")[-1]`, `encode("-")[-1]` |
| token-classification | chat: system, user = question, assistant = step_1<extra_0>step_2<extra_0>... | every `<extra_0>` | `encode("<extra_0>")[0]` |
| orm | chat: user = question, assistant = the steps joined by the separator (a leading BOS text dropped) | the last token (the card's score); also each step's last token | - |
"""
from __future__ import annotations

from typing import Sequence

from ..models.chat import render_chat
from ..steps.encoding import Encoded, Overlong


def fit(ids: list[int], positions: list[int], spans, max_length: int, overlong: str) -> Encoded | None:
    """An Encoded of a whole sequence read at `positions` (one per step), cut to max_length as --overlong says:
    'skip' -> None, 'error' -> Overlong, 'truncate' -> keep the steps whose read position fits (None if none)."""
    n = len(positions)
    if len(ids) <= max_length:
        return Encoded([], ids, [], n, False, list(spans), positions)
    if overlong == "skip":
        return None
    if overlong == "error":
        raise Overlong(f"the scorer's input is {len(ids)} tokens, over max_length {max_length} (raise --max-length, "
                       "or use --overlong skip|truncate)")
    kept = [p for p in positions if p < max_length]
    if not kept:
        return None
    return Encoded([], ids[:kept[-1] + 1], [], len(kept), True, list(spans), kept)


def _find_tokens(offsets, ids, char_ends: Sequence[int], token_id: int, what: str) -> list[int]:
    """For each char end, the token `token_id` whose text ends there; ValueError naming `what` if one is absent."""
    by_end = {}
    for j, ((_, e), t) in enumerate(zip(offsets, ids)):
        if t == token_id:
            by_end[e] = j
    missing = [k for k, e in enumerate(char_ends) if e not in by_end]
    if missing:
        raise ValueError(f"the {what} after step {missing[0] + 1} did not tokenize as its own token (id {token_id}); "
                         "the step text may run into it")
    return [by_end[e] for e in char_ends]


def math_shepherd(tok, question: str, steps: Sequence[str], tag: str, tag_id: int) -> tuple[list[int], list[int]]:
    """Math-Shepherd's card: f"{question} {output}", output = the steps each followed by " ки", joined by "\\n";
    `tokenizer.encode` (special tokens added); read where the id is the tag's."""
    text = question + " "
    ends = []
    for k, step in enumerate(steps):
        text += ("\n" if k else "") + step.strip() + " " + tag
        ends.append(len(text))
    enc = tok(text, return_offsets_mapping=True)
    ids = enc["input_ids"]
    return ids, _find_tokens(enc["offset_mapping"], ids, ends, tag_id, f"step tag {tag!r}")


def rlhflow(tok, question: str, steps: Sequence[str], plus: str, plus_id: int) -> tuple[list[int], list[int]]:
    """RLHFlow's evaluation: one user turn per step (the first holds the question), each answered "+" by the
    assistant; P(+) of step k is read where the model predicts its assistant "+" (the card's logits[:, -3] of
    the conversation cut after turn k). The conversations cut after each turn are prefixes of the whole one, so a
    single forward pass reads every step."""
    conv: list[dict] = []
    for k, step in enumerate(steps):
        conv += [{"role": "user", "content": f"{question} {step}" if k == 0 else step},
                 {"role": "assistant", "content": plus}]
    full = render_chat(tok, conv)
    starts = []
    for k in range(len(steps)):
        head = render_chat(tok, conv[:2 * k + 1], generation_prompt=True)
        if not full.startswith(head) or not full.startswith(plus, len(head)):
            raise ValueError(f"the chat template does not render step {k + 1}'s assistant turn as the generation "
                             "prompt followed by its content; it is not an RLHFlow-style template")
        starts.append(len(head))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)  # the template writes BOS itself
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    at = {s: j for j, (s, _) in enumerate(offsets)}
    positions = []
    for k, s in enumerate(starts):
        j = at.get(s)
        if j is None or ids[j] != plus_id or j == 0:
            raise ValueError(f"the assistant {plus!r} of step {k + 1} is not the token id {plus_id} (compare "
                             f"{plus!r} with {' ' + plus!r}); the template or tokenizer differs from RLHFlow's")
        positions.append(j - 1)  # the position that predicts "+"
    return ids, positions


def token_classification(tok, question: str, steps: Sequence[str], sep: str, sep_id: int,
                         system_prompt: str | None) -> tuple[list[int], list[int]]:
    """Qwen2.5-Math-PRM's card: system, user, assistant = the steps joined by the separator with one after the
    last ("<extra_0>"); `tokenizer.encode` of the rendered text; read at every separator id."""
    messages = ([] if system_prompt is None else [{"role": "system", "content": system_prompt}]) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": sep.join(steps) + sep}]
    ids = tok(render_chat(tok, messages))["input_ids"]
    positions = [j for j, t in enumerate(ids) if t == sep_id]
    if len(positions) != len(steps):
        raise ValueError(f"{len(positions)} separator tokens {sep!r} in the input for {len(steps)} steps; the "
                         "question or a step contains the separator")
    return ids, positions


def orm(tok, question: str, steps: Sequence[str], separator: str) -> tuple[list[int], list[int]]:
    """A sequence-classification reward model's card (Skywork-Reward): user = question, assistant = response;
    a BOS the template writes is dropped as text, since tokenizing adds it; the score is the head at the last
    token. Each earlier step is also read at its last token (a prefix of the response, without the template's
    end of turn: a reading the model was not trained for)."""
    content = separator.join(steps)
    text = render_chat(tok, [{"role": "user", "content": question}, {"role": "assistant", "content": content}])
    bos = getattr(tok, "bos_token", None)
    if bos and text.startswith(bos):
        text = text[len(bos):]
    start = text.rfind(content)
    if start < 0:
        raise ValueError("the chat template changes the response's text; cannot find where its steps end")
    enc = tok(text, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    ends, pos = [], start
    for step in steps[:-1]:
        pos += len(step)
        ends.append(pos)
        pos += len(separator)
    positions = [max(j for j, (s, _) in enumerate(offsets) if s < e) for e in ends]
    return ids, positions + [len(ids) - 1]
