"""The step-tag encoding of the baselines: a tag token after each step, where a PRM predicts `+`/`-` (its head is
models/heads.py StepLogits, its training targets training/targets.py, its scoring scoring/readout.py).

The baselines the implicit PRM paper compares against (Yuan et al. 2024, arXiv 2412.01981, Sec. 4) learn from
step labels:
- Math-Shepherd (Wang et al. 2024, arXiv 2312.08935) appends a tag token ("ки") to every step and trains the LM to
  predict `+` or `-` there; a step's score is P(+) at its tag, the softmax over the two tokens' logits. Here the
  logit z = logit(+) - logit(-) at the tag feeds `losses.step_bce_loss`, which is that two-way cross-entropy, on
  hard or soft Monte-Carlo labels.
- An outcome verifier (AutoPSV, Lu et al. 2024, arXiv 2405.16265) is trained with the outcome label at every step
  boundary, so its confidence is defined mid-response. It is the same model read at the same tags, plus the
  boundary before the first step (the prompt's last token), trained on the outcome: `objective="orm"`. z is a
  linear function of the final hidden state, (W[+] - W[-]) . h: a value head whose weights start from the LM
  head's two rows (with LoRA the head rows stay frozen and the adapted body learns).

The tag is inserted as a token id after each step's tokens, not as text, so its position is exact whatever the
tokenizer merges; it must be one token (`resolve_tag` refuses one the tokenizer splits). Each step is tokenized on
its own: step text, tag, then the whitespace that separated it from the next step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..core.errors import ConfigError
from .batching import pad_batch
from .encoding import Encoded, Encoder, Overlong, encode_samples

TAG_CANDIDATES = (" ки", " ###")  # "auto": Math-Shepherd's tag where it is one token, else a rare one


@dataclass(frozen=True)
class StepTag:
    """The tag token placed after each step, and the two tokens whose logits give P(+)."""

    tag: str
    tag_id: int
    plus: str
    plus_id: int
    minus: str
    minus_id: int


def single_token(tok, text: str, what: str) -> int:
    """The id of `text` if the tokenizer holds it as one token, else ConfigError naming the setting."""
    ids = tok.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ConfigError(f"field '{what}': {text!r} is {len(ids)} tokens {ids} for this tokenizer; a step tag and "
                          "the +/- tokens must each be one token (pick another, e.g. ' ###')")
    return ids[0]


def resolve_tag(tok, tag: str = "auto", plus: str = "+", minus: str = "-") -> StepTag:
    """The StepTag for a tokenizer; tag "auto" = the first of TAG_CANDIDATES that is one token."""
    if tag == "auto":
        tag = next((t for t in TAG_CANDIDATES if len(tok.encode(t, add_special_tokens=False)) == 1), None)
        if tag is None:
            raise ConfigError(f"field 'step_tag': none of {list(TAG_CANDIDATES)} is one token for this tokenizer; "
                              "give a one-token tag")
    plus_id, minus_id = single_token(tok, plus, "plus_token"), single_token(tok, minus, "minus_token")
    if plus_id == minus_id:
        raise ConfigError(f"fields 'plus_token' and 'minus_token' are the same token ({plus!r}, {minus!r})")
    return StepTag(tag, single_token(tok, tag, "step_tag"), plus, plus_id, minus, minus_id)


def encode_tagged(encoder: Encoder, prompt: str, response: str, spans: list[tuple[int, int]],
                  tag_id: int) -> Encoded | None:
    """Encode a response with the tag token after each step; `tag_positions` index the tags in response_ids.

    Over max_length: None with overlong='skip', Overlong with 'error', and with 'truncate' only the steps whose
    tag fits are kept (None when not even the first one fits).
    """
    tok = encoder.tok
    p_ids = encoder.prompt_ids(prompt)
    ids: list[int] = []
    steps: list[int] = []
    tags: list[int] = []
    for k, (s, e) in enumerate(spans):
        piece = response[s:e]
        body = piece.rstrip()
        trail = piece[len(body):]
        body_ids = tok.encode(body, add_special_tokens=False) if body else []
        trail_ids = tok.encode(trail, add_special_tokens=False) if trail else []
        ids += body_ids
        tags.append(len(ids))
        ids.append(tag_id)
        ids += trail_ids
        steps += [k] * (len(body_ids) + 1 + len(trail_ids))
    room = encoder.max_length - len(p_ids)
    if len(ids) > room:
        if encoder.overlong == "skip":
            return None
        kept = [t for t in tags if t < room]
        if encoder.overlong == "truncate" and not kept:
            return None  # not even the first step and its tag fit: nothing to score, left out like 'skip'
        if encoder.overlong == "error":
            raise Overlong(f"prompt ({len(p_ids)} tokens) + tagged response ({len(ids)} tokens) exceed max_length "
                           f"{encoder.max_length} (raise --max-length, or use --overlong skip|truncate)",
                           prompt_only=room < 1)
        end = kept[-1] + 1
        return Encoded(p_ids, ids[:end], steps[:end], len(kept), True, spans, kept)
    return Encoded(p_ids, ids, steps, len(spans), False, spans, tags)


def encode_tagged_samples(encoder: Encoder, samples, tag_id: int, split: str = "auto",
                          step_regex: str | None = None, separator: str = "\n\n") -> list[Encoded | None]:
    """encode_tagged over data.Samples; errors name the sample's file, line and field (encoding.encode_samples)."""
    return encode_samples(encoder, samples, split, step_regex, separator,
                          encode=lambda prompt, response, spans: encode_tagged(encoder, prompt, response, spans, tag_id))




def read_positions(enc: Encoded, boundary0: bool) -> list[int]:
    """Sequence positions whose hidden state is read: each step's tag (and the prompt's last token if boundary0)."""
    p = len(enc.prompt_ids)
    return ([p - 1] if boundary0 else []) + [p + t for t in enc.tag_positions]


def batch_inputs(encs: Sequence[Encoded], boundary0: bool, pad_id: int, device
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """(ids (B, T), attention mask, read positions (B, T) bool, number read per row) for a batch."""

    ids, mask = pad_batch([e.ids for e in encs], pad_id, device)
    pos = torch.zeros(ids.shape, dtype=torch.bool)
    counts = []
    for i, e in enumerate(encs):
        where = read_positions(e, boundary0)
        pos[i, where] = True
        counts.append(len(where))
    return ids, mask, pos.to(ids.device), counts
