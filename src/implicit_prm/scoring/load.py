"""Every scoring format behind one call: `load_scorer(prm, format)` returns an ImplicitPRM (format implicit) or a
ReadoutPRM (math-shepherd, rlhflow, token-classification, orm); `implicit-prm score` drives both alike, and both
write the same step_rewards / q_values / scores records with a reward_schema saying what the numbers are.

  detect.py    --format auto: the format from the checkpoint's files, or a refusal listing the formats
  layouts.py   each released family's input layout, as its model card builds it, and where it is read
  heads.py     what is read there: +/- logits of a causal LM, a 2-label token head, a 1-label reward head
  readout.py   ReadoutPRM and load_readout: a head + a layout + token ids from the tokenizer
"""
from __future__ import annotations

from ..core.errors import ConfigError
from .detect import FORMATS, detect_format
from .implicit import ImplicitPRM
from .readout import load_readout


def load_scorer(prm: str, format: str = "auto", ref: str | None = None, reference_free: bool = False,  # noqa: A002
                beta: float | None = None, step_tag: str | None = None, plus_token: str = "+",
                minus_token: str = "-", trust_remote_code: bool = False, **kw):
    """The scorer of `prm` in `format` ('auto': detect.detect_format). kw: device, template, system_prompt,
    precision, max_length, batch_tokens, overlong, logprob_cache (implicit), separator (orm)."""
    implicit_settings = bool(ref) or reference_free or beta is not None
    fmt = detect_format(prm, implicit_settings) if format == "auto" else format
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "implicit":

        kw.pop("separator", None)
        return ImplicitPRM.from_pretrained(prm, ref, reference_free, beta, **kw)
    if implicit_settings:
        raise ConfigError(f"--ref, --reference-free and --beta apply only to implicit PRMs; '{prm}' is scored in "
                          f"the {fmt} format")

    kw.pop("logprob_cache", None)
    return load_readout(prm, fmt, step_tag, plus_token, minus_token, trust_remote_code, **kw)


__all__ = ["FORMATS", "detect_format", "load_scorer"]
