"""Every scoring format behind one call: `load_scorer(settings)` returns an ImplicitPRM (format implicit) or a
ReadoutPRM (math-shepherd, rlhflow, token-classification, orm), both `LocalScorer`s (protocol.py); `implicit-prm
score` drives both alike, and both write the same step_rewards / q_values / scores records with a reward_schema
saying what the numbers are.

  detect.py    --format auto: the format from the checkpoint's files, or a refusal listing the formats
  layouts.py   each released family's input layout, as its model card builds it, and where it is read
  readout.py   ReadoutPRM and load_readout: a head (models/heads.py) + a layout + token ids from the tokenizer
"""
from __future__ import annotations

import dataclasses

from ..core.errors import ConfigError
from .detect import FORMATS, detect_format
from .implicit import ImplicitPRM
from .protocol import LocalScorer
from .readout import load_readout
from .settings import ScorerSettings

SETTINGS = {f.name for f in dataclasses.fields(ScorerSettings)}


def load_scorer(settings: ScorerSettings | str, format: str | None = None, *, device: str | None = None,  # noqa: A002
                max_length: int = 4096, batch_tokens: int = 8192, overlong: str = "error", separator: str = "\n\n",
                **kw) -> LocalScorer:
    """The scorer of `settings.prm` in `settings.format` ('auto': detect.detect_format).

    The Python API may pass the checkpoint and any ScorerSettings field instead: `load_scorer(dir, "auto",
    precision="fp32")`. `max_length`, `batch_tokens` and `overlong` bound what is scored; `separator` joins the
    steps an orm reads."""
    if isinstance(settings, str):
        unknown = set(kw) - SETTINGS
        if unknown:
            raise TypeError(f"load_scorer: unknown settings {sorted(unknown)}")
        settings = ScorerSettings(prm=settings, format=format or "auto", **kw)
    elif format is not None or kw:
        settings = dataclasses.replace(settings, **({"format": format} if format else {}), **kw)
    s = settings
    device = device or str(s.torch_device())
    fmt = detect_format(s.prm, s.implicit_only) if s.format == "auto" else s.format
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "implicit":
        return ImplicitPRM.from_pretrained(s.prm, s.ref, s.reference_free, s.beta, device=device, template=s.template,
                                           system_prompt=s.system_prompt, precision=s.precision, max_length=max_length,
                                           logprob_cache=s.logprob_cache, batch_tokens=batch_tokens, overlong=overlong,
                                           attn_implementation=s.attn_implementation)
    if s.implicit_only:
        raise ConfigError(f"--ref, --reference-free and --beta apply only to implicit PRMs; '{s.prm}' is scored in "
                          f"the {fmt} format")
    return load_readout(s.prm, fmt, s.step_tag, s.plus_token, s.minus_token, s.trust_remote_code, device=device,
                        template=s.template, system_prompt=s.system_prompt, max_length=max_length, overlong=overlong,
                        separator=separator, precision=s.precision, batch_tokens=batch_tokens,
                        attn_implementation=s.attn_implementation)


__all__ = ["FORMATS", "ScorerSettings", "detect_format", "load_scorer"]
