"""Score with a step-tag model (a Math-Shepherd PRM or an outcome verifier trained here), and pick the scorer of a
model directory: `load_scorer` returns a StepTagPRM or an ImplicitPRM, which `implicit-prm score` drives alike."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .encoding import Encoded, Encoder
from .errors import UserError
from .logprobs import resolve_precision
from .metadata import PRMMetadata, read_metadata
from .models import fingerprint, load_model, load_tokenizer, resolve
from .processes import ProcessGroup, SingleProcess, default_device
from .schema import probability_schema
from .step_tags import (
    StepLogits,
    StepTag,
    aggregate_probabilities,
    encode_tagged_samples,
    resolve_tag,
    step_probabilities,
)


def step_record(probs: np.ndarray, boundary0: bool, scorer: str) -> dict:
    """One response's record from the probabilities at its read positions (the prompt's end first if boundary0)."""
    p = [float(x) for x in probs]
    rec = {}
    if boundary0:
        rec["start_value"], p = p[0], p[1:]
    rec.update({"step_rewards": p, "q_values": p, "scores": aggregate_probabilities(p),
                "reward_schema": probability_schema(scorer)})
    return rec


class StepTagPRM:
    """P(+) at the tag after each step: `StepTagPRM.from_pretrained(dir).score(prompt, steps)`."""

    ref = None
    beta = None

    def __init__(self, model: StepLogits, tokenizer, tag: StepTag, boundary0: bool, scorer: str,
                 template: str = "auto", system_prompt: str | None = None, precision: str = "auto",
                 max_length: int = 4096, device: str | torch.device = "cpu", batch_tokens: int = 8192,
                 overlong: str = "error"):
        self.model, self.tok, self.tag, self.boundary0, self.scorer = model, tokenizer, tag, boundary0, scorer
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, precision)
        self.template, self.system_prompt = template, system_prompt
        self.encoder = Encoder(tokenizer, template, max_length, overlong, system_prompt)
        self.batch_tokens = batch_tokens
        self._own_key: str | None = None

    @classmethod
    def from_pretrained(cls, prm: str, meta: PRMMetadata, device: str | None = None, template: str = "auto",
                        system_prompt: str | None = None, **kw) -> "StepTagPRM":
        tok = load_tokenizer(prm)
        tag = resolve_tag(tok, meta.step_tag or "auto", meta.plus_token, meta.minus_token)
        device = device or default_device()
        model = StepLogits(load_model(prm), tag.plus_id, tag.minus_id).to(device).eval()
        template = meta.template if template == "auto" else template
        system_prompt = meta.system_prompt if system_prompt is None else system_prompt
        scorer = "orm" if meta.objective == "orm" else "step_prm"
        kw = {k: v for k, v in kw.items() if k in ("precision", "max_length", "batch_tokens", "overlong")}
        out = cls(model, tok, tag, meta.boundary0, scorer, template, system_prompt, device=device, **kw)
        print(f"[implicit-prm] PRM {prm}: {meta.describe()}; scoring in {out.precision}", flush=True)
        return out

    @property
    def own_key(self) -> str:
        if self._own_key is None:
            self._own_key = f"{fingerprint(self.model.lm, base_only=False)}:{self.precision}:{self.tag.tag_id}"
        return self._own_key

    def encode(self, samples, split: str = "auto", step_regex: str | None = None,
               separator: str = "\n\n") -> list[Encoded | None]:
        return encode_tagged_samples(self.encoder, samples, self.tag.tag_id, split, step_regex, separator)

    def score_encoded(self, encs: Sequence[Encoded], acc: ProcessGroup | None = None, show: bool = False,
                      token_rewards: bool = False, on_record: Callable[[int, dict], None] | None = None) -> list:
        """Records of every response this process scores (None for the others' under several processes)."""
        acc = acc or SingleProcess(self.device)
        out: list[dict | None] = [None] * len(encs)

        def on_batch(idx: list[int], arrays: list[np.ndarray]) -> None:
            for i, a in zip(idx, arrays):
                out[i] = step_record(a, self.boundary0, self.scorer)
                if on_record is not None:
                    on_record(i, out[i])

        step_probabilities(self.model, encs, self.boundary0, self.tok.pad_token_id, self.device, self.precision,
                           self.batch_tokens, show, (acc.process_index, acc.num_processes), on_batch)
        return out

    def score(self, prompt: str, steps: list[str] | str, separator: str = "\n\n", split: str = "auto") -> dict:
        """Score one response given as a list of steps (or a string, split by `split`), as ImplicitPRM.score."""
        from .data.formats import Sample

        if isinstance(steps, str):
            sample = Sample(prompt, steps, None, None, {}, ("<api>", 0), 0, 0)
        else:
            sample = Sample(prompt, separator.join(steps), None, list(steps), {}, ("<api>", 0), 0, 0)
        return self.score_encoded(self.encode([sample], split, separator=separator))[0]


def load_scorer(prm: str, ref: str | None = None, reference_free: bool = False, beta: float | None = None, **kw):
    """The scorer of a model: a StepTagPRM for a step-tag model trained here (its implicit_prm.json says
    kind 'step_tag'), else an ImplicitPRM. Both have encode(), score_encoded(), own_key and the settings."""
    meta = read_metadata(resolve(prm))
    if meta is not None and meta.kind == "step_tag":
        if ref or reference_free or beta is not None:
            raise UserError(f"'{prm}' is a step-tag scorer (P(+) at each step's tag): --ref, --reference-free and "
                            "--beta apply only to implicit PRMs")
        return StepTagPRM.from_pretrained(prm, meta, **kw)
    from .prm import ImplicitPRM

    return ImplicitPRM.from_pretrained(prm, ref, reference_free, beta, **kw)
