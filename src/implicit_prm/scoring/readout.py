"""Scorers that read a value at one position per step (every format but `implicit`): `ReadoutPRM`, and
`load_readout`, which builds one for a format: its model head (heads.py), its input layout (layouts.py, or the
tag-after-each-step encoding of a step-tag model trained here: steps/tags.py) and its token ids, all from the
checkpoint's tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.distributed import ProcessGroup, SingleProcess, default_device
from ..core.errors import ConfigError, UserError
from ..core.precision import resolve_precision
from ..flops.counting import ModelShape
from ..models.heads import SequenceValues, StepLogits, TokenClassLogits
from ..models.loading import attention_kernel, fingerprint, load_model, load_tokenizer, resolve
from ..models.metadata import PRMMetadata, read_metadata
from ..rewards import aggregate
from ..steps.encoding import Encoded, Encoder, encode_samples
from ..steps.tags import encode_tagged, resolve_tag, single_token
from . import layouts
from .detect import raw_config
from .forward import step_values
from .protocol import LocalScorer
from .schema import readout_schema

# the system message of Qwen2.5-Math-PRM's model card (the token-classification format's default)
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def readout_record(values: np.ndarray, boundary0: bool, schema: dict) -> dict:
    """One response's record from the values at its read positions (the prompt's end first if boundary0): each
    step's value is both its step reward and its q-value (it already judges the prefix it ends)."""
    v = [float(x) for x in values]
    rec = {}
    if boundary0:
        rec["start_value"], v = v[0], v[1:]
    scores = aggregate(v, schema["scale"])
    rec.update({"step_rewards": v, "q_values": v, "scores": scores, "reward_schema": schema})
    return rec


def _steps(response: str, spans) -> list[str]:
    return [response[s:e].strip() for s, e in spans]


class ReadoutPRM(LocalScorer):
    """`load_scorer(dir).score(prompt, steps)`: a value per step read at one position each (see the module doc).
    `model` is a head of models/heads.py; `schema` (readout_schema) names the format and the scale."""

    def __init__(self, model: torch.nn.Module, tokenizer, encode_one: Callable, schema: dict, boundary0: bool = False,
                 template: str = "auto", system_prompt: str | None = None, precision: str = "auto",
                 device: str | torch.device = "cpu", batch_tokens: int = 8192, key: str = "", name: str = ""):
        self.model, self.tok, self.encode_one, self._schema = model, tokenizer, encode_one, schema
        self.format, self.name = schema["format"], name
        self.boundary0, self.template, self.system_prompt = boundary0, template, system_prompt
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, precision)
        self.batch_tokens, self._key = batch_tokens, key
        self._own_key: str | None = None

    @property
    def schema(self) -> dict:
        return self._schema

    @property
    def reference(self) -> None:
        return None  # a readout scorer runs its own model only

    @property
    def lora(self) -> bool:
        return hasattr(self.model.lm, "peft_config")

    @property
    def flops_shape(self) -> ModelShape:
        return self.model.flops_shape(self.name)

    def resolved_settings(self) -> dict:
        return {"template": self.template, "system_prompt": self.system_prompt}

    @property
    def own_key(self) -> str:
        if self._own_key is None:
            self._own_key = f"{fingerprint(self.model.lm, base_only=False)}:{self.precision}:{self._key}"
        return self._own_key

    def encode(self, samples, split: str = "auto", step_regex: str | None = None,
               separator: str = "\n\n") -> list[Encoded | None]:
        return encode_samples(None, samples, split, step_regex, separator, encode=self.encode_one)

    def score_encoded(self, encs: Sequence[Encoded], acc: ProcessGroup | None = None, show: bool = False,
                      token_rewards: bool = False, on_record: Callable[[int, dict], None] | None = None) -> list:
        """Records of every response this process scores (None for the others' under several processes)."""
        acc = acc or SingleProcess(self.device)
        out: list[dict | None] = [None] * len(encs)

        def on_batch(idx: list[int], arrays: list[np.ndarray]) -> None:
            for i, a in zip(idx, arrays):
                out[i] = readout_record(a, self.boundary0, self._schema)
                if encs[i].truncated:
                    out[i]["truncated"] = True
                if on_record is not None:
                    on_record(i, out[i])

        step_values(self.model, encs, self.boundary0, self.tok.pad_token_id, self.device, self.precision,
                    self.batch_tokens, show, (acc.process_index, acc.num_processes), on_batch,
                    sigmoid=self._schema["scale"] == "probability")
        return out


def _trained_step_tag(prm: str, meta: PRMMetadata, template: str, system_prompt: str | None, max_length: int,
                      overlong: str, attn_implementation: str | None = None, **kw) -> ReadoutPRM:
    """A step-tag PRM or outcome verifier trained here: its tag inserted as a token id after each step, in the
    template it was trained with (steps.tags.encode_tagged)."""
    tok = load_tokenizer(prm)
    tag = resolve_tag(tok, meta.step_tag or "auto", meta.plus_token, meta.minus_token)
    model = StepLogits(load_model(prm, attn_implementation=attn_implementation), tag.plus_id, tag.minus_id)
    template = meta.template if template == "auto" else template
    system_prompt = meta.system_prompt if system_prompt is None else system_prompt
    encoder = Encoder(tok, template, max_length, overlong, system_prompt)
    scorer = "orm" if meta.objective == "orm" else "step_prm"
    out = ReadoutPRM(model, tok, lambda p, r, spans: encode_tagged(encoder, p, r, spans, tag.tag_id),
                     readout_schema(scorer, "math-shepherd", "probability"), meta.boundary0, template,
                     system_prompt, key=str(tag.tag_id), name=prm, **kw)
    print(f"[implicit-prm] PRM {prm}: {meta.describe()}; scoring in {out.precision}", flush=True)
    return out


def _card_only(fmt: str, template: str, system_prompt: str | None, allow_system: bool) -> None:
    if template != "auto":
        raise ConfigError(f"--template applies to implicit PRMs and models trained here; the {fmt} format builds "
                          "its model card's input layout")
    if system_prompt is not None and not allow_system:
        raise ConfigError(f"--system-prompt does not apply to the {fmt} format (its layout is the model card's)")


def _head_model(prm: str, config: dict | None, auto_class: str, trust_remote_code: bool, labels: int, fmt: str,
                attn_implementation: str | None = None):
    """A token- or sequence-classification checkpoint, its own modeling code only with --trust-remote-code."""
    import transformers

    n = (config or {}).get("num_labels") or len((config or {}).get("id2label") or {}) or None
    if n is not None and n != labels:
        raise ConfigError(f"'{prm}': its head has {n} labels; the {fmt} format needs {labels}. Pass --format with "
                          "the format the checkpoint uses")
    auto_map = (config or {}).get("auto_map") or {}
    mapped = next((c for c in (auto_class, "AutoModel") if c in auto_map), None)  # its own code, if it ships some
    if mapped and not trust_remote_code:
        raise ConfigError(f"'{prm}' ships its own modeling code ({auto_map[mapped]}); pass --trust-remote-code to "
                          "run it (only for checkpoints you trust)")
    cls = getattr(transformers, mapped or auto_class)
    try:
        attn_implementation = attention_kernel(attn_implementation)  # not knowing the device: auto is sdpa
        kw = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        return cls.from_pretrained(resolve(prm), dtype=torch.float32, trust_remote_code=bool(mapped), **kw)
    except OSError as e:

        raise UserError(f"cannot load model '{prm}': {e}") from None


def load_readout(prm: str, fmt: str, step_tag: str | None = None, plus_token: str = "+", minus_token: str = "-",
                 trust_remote_code: bool = False, device: str | None = None, template: str = "auto",
                 system_prompt: str | None = None, max_length: int = 4096, overlong: str = "error",
                 separator: str = "\n\n", attn_implementation: str | None = None, **kw) -> ReadoutPRM:
    """The ReadoutPRM of a checkpoint in format `fmt` (math-shepherd, rlhflow, token-classification, orm);
    `attn_implementation` goes to from_pretrained."""
    device = device or default_device()
    kw = {k: v for k, v in kw.items() if k in ("precision", "batch_tokens")}
    meta = read_metadata(resolve(prm)) if Path(resolve(prm)).is_dir() else None
    if meta is not None and meta.kind == "step_tag":
        if fmt != "math-shepherd":
            raise ConfigError(f"'{prm}' is a step-tag model trained here: score it with --format math-shepherd "
                              "(or auto)")
        out = _trained_step_tag(prm, meta, template, system_prompt, max_length, overlong, attn_implementation,
                                device=device, **kw)
        out.model.to(device).eval()
        return out
    tok = load_tokenizer(prm)
    wrap = lambda layout: lambda p, r, spans: layouts.fit(*layout(p, _steps(r, spans)), spans,  # noqa: E731
                                                          max_length, overlong)
    if fmt == "math-shepherd":
        _card_only(fmt, template, system_prompt, False)
        tag = step_tag or "ки"
        tag_id = single_token(tok, tag, "step_tag")
        pair = tok.encode(f"{plus_token} {minus_token}", add_special_tokens=False)  # the card's encode(...)[1:]
        if len(pair) != 2:
            raise ConfigError(f"fields 'plus_token', 'minus_token': {plus_token + ' ' + minus_token!r} is {len(pair)} "
                              "tokens for this tokenizer; Math-Shepherd's card reads two")
        model = StepLogits(load_model(prm, attn_implementation=attn_implementation), pair[0], pair[1])
        encode = wrap(lambda p, steps: layouts.math_shepherd(tok, p, steps, tag, tag_id))
        schema, key = readout_schema("step_prm", fmt, "probability"), f"{tag_id}:{pair}"
    elif fmt == "rlhflow":
        _card_only(fmt, template, system_prompt, False)
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"'{prm}' has no chat template; the rlhflow format needs the model's own")
        plus_id, minus_id = single_token(tok, plus_token, "plus_token"), single_token(tok, minus_token, "minus_token")
        model = StepLogits(load_model(prm, attn_implementation=attn_implementation), plus_id, minus_id)
        encode = wrap(lambda p, steps: layouts.rlhflow(tok, p, steps, plus_token, plus_id))
        schema, key = readout_schema("step_prm", fmt, "probability"), f"{plus_id}:{minus_id}"
    elif fmt == "token-classification":
        _card_only(fmt, template, system_prompt, True)
        system_prompt = QWEN_PRM_SYSTEM if system_prompt is None else system_prompt
        sep = step_tag or "<extra_0>"
        sep_id = single_token(tok, sep, "step_tag")
        model = TokenClassLogits(_head_model(prm, raw_config(prm), "AutoModelForTokenClassification",
                                             trust_remote_code, 2, fmt, attn_implementation), prm)
        encode = wrap(lambda p, steps: layouts.token_classification(tok, p, steps, sep, sep_id, system_prompt))
        schema, key = readout_schema("step_prm", fmt, "probability"), f"{sep_id}:{system_prompt}"
    elif fmt == "orm":
        _card_only(fmt, template, system_prompt, False)
        model = SequenceValues(_head_model(prm, raw_config(prm), "AutoModelForSequenceClassification",
                                           trust_remote_code, 1, fmt, attn_implementation), prm)
        encode = wrap(lambda p, steps: layouts.orm(tok, p, steps, separator))
        schema, key = readout_schema("orm", fmt, "logit"), repr(separator)
    else:
        raise ConfigError(f"unknown format {fmt!r}")
    out = ReadoutPRM(model.to(device).eval(), tok, encode, schema, False, "auto", system_prompt, device=device,
                     key=key, name=prm, **kw)
    print(f"[implicit-prm] PRM {prm}: {fmt} format; scoring in {out.precision}", flush=True)
    return out
