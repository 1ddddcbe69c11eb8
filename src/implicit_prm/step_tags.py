"""Step-tag scorers: a PRM that predicts `+`/`-` at a tag token after each step, and an outcome verifier (ORM).

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
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .encoding import Encoded, Encoder, Overlong, encode_samples
from .errors import ConfigError

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


def step_targets(samples, encs: Sequence[Encoded | None], source: str) -> list[list[float] | None]:
    """The label of each read position of each response: its step labels (source "steps"), or its outcome label
    at the prompt's end and after every step ("outcome"). A response whose step labels do not match its steps is
    an InputError naming its file, line and field."""
    from .errors import InputError

    out: list[list[float] | None] = []
    for s, e in zip(samples, encs):
        if e is None:
            out.append(None)
            continue
        if source == "outcome":
            out.append([float(s.label)] * (e.n_steps + 1))
            continue
        labels = getattr(s, "step_labels", None)
        path, line = s.source
        if labels is None:
            raise InputError(path, line, "step_labels", "missing; a step-label PRM trains on one label per step "
                             "(make them with `implicit-prm label-mc` or `label-autopsv`)")
        n_all = len(e.spans)
        if len(labels) != n_all:
            raise InputError(path, line, "step_labels", f"has {len(labels)} labels but the response has {n_all} "
                             "steps; expected one per step")
        out.append([float(x) for x in labels[:e.n_steps]])
    return out


def read_positions(enc: Encoded, boundary0: bool) -> list[int]:
    """Sequence positions whose hidden state is read: each step's tag (and the prompt's last token if boundary0)."""
    p = len(enc.prompt_ids)
    return ([p - 1] if boundary0 else []) + [p + t for t in enc.tag_positions]


class StepLogits(nn.Module):
    """z = logit(+) - logit(-) at chosen positions of a batch: one nn.Module so that accelerate wraps it."""

    def __init__(self, lm: nn.Module, plus_id: int, minus_id: int):
        super().__init__()
        self.lm, self.plus_id, self.minus_id = lm, plus_id, minus_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(N,) z at the True entries of `positions` (B, T), in row-major order."""
        decoder = self.lm.get_decoder()
        if attention_mask is not None and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all()):
            attention_mask = None  # right padding under a causal mask changes nothing read (see TokenLogProbs)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        h = hidden[positions]  # (N, H)
        head = self.lm.get_output_embeddings()
        w = head.weight[[self.plus_id, self.minus_id]]  # (2, H)
        logits = h @ w.to(h.dtype).T  # (N, 2)
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[[self.plus_id, self.minus_id]].to(h.dtype)
        return (logits[:, 0] - logits[:, 1]).float()  # (N,)


def batch_inputs(encs: Sequence[Encoded], boundary0: bool, pad_id: int, device
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """(ids (B, T), attention mask, read positions (B, T) bool, number read per row) for a batch."""
    from .batching import pad_batch

    ids, mask = pad_batch([e.ids for e in encs], pad_id, device)
    pos = torch.zeros(ids.shape, dtype=torch.bool)
    counts = []
    for i, e in enumerate(encs):
        where = read_positions(e, boundary0)
        pos[i, where] = True
        counts.append(len(where))
    return ids, mask, pos.to(ids.device), counts


def aggregate_probabilities(p: list[float]) -> dict[str, float]:
    """Response scores from per-step probabilities: min (the paper's choice for step scorers), last (an ORM's
    score), prod (every step right, if independent) and mean. Every score stays a probability."""
    return {"min": min(p), "last": p[-1], "prod": float(np.prod(p)), "mean": sum(p) / len(p)}


@torch.no_grad()
def step_probabilities(model: StepLogits, encs: Sequence[Encoded], boundary0: bool, pad_id: int, device,
                       precision: str, batch_tokens: int, show: bool = False, shard: tuple[int, int] = (0, 1),
                       on_batch: Callable[[list[int], list[np.ndarray]], None] | None = None,
                       sigmoid: bool = True) -> None:
    """sigmoid(z) (or z itself with sigmoid=False) at each response's read positions, by length batches;
    `on_batch(indices, arrays)` per batch. With shard=(rank, world) this process runs every world-th batch of the
    one plan. `model` is any module with StepLogits' interface (scorers/heads.py)."""
    from tqdm.auto import tqdm

    from .batching import length_batches
    from .logprobs import autocast_context

    model.eval()
    dev = torch.device(device)
    plan = length_batches([len(e) for e in encs], batch_tokens)[shard[0]::shard[1]]
    bar = tqdm(total=sum(len(b) for b in plan), desc="step scores", unit="resp", disable=not show)
    for idx in plan:
        batch = [encs[i] for i in idx]
        ids, mask, pos, counts = batch_inputs(batch, boundary0, pad_id, dev)
        with autocast_context(dev, precision):
            z = model(ids, mask, pos)  # (N,)
        probs = (torch.sigmoid(z) if sigmoid else z).double().cpu().numpy()
        arrays = np.split(probs, np.cumsum(counts)[:-1])
        if on_batch is not None:
            on_batch(idx, arrays)
        bar.update(len(idx))
    bar.close()
