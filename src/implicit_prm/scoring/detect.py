"""Which scoring format a checkpoint uses (`--format auto`), read from its files without running any of its code.

- our implicit_prm.json: 'implicit', or 'math-shepherd' for a step-tag model trained here (kind 'step_tag');
- config.json architectures: a token-classification head or a *ProcessRewardModel -> 'token-classification';
  a *ForSequenceClassification head -> 'orm';
- a plain causal LM is ambiguous (Math-Shepherd, RLHFlow and EurusPRM all are one): 'implicit' only when the user
  gave an implicit-only setting (--ref, --reference-free, --beta), else the command refuses and lists the formats.
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from ..core.io import read_json_file
from ..models.loading import adapter_base, resolve
from ..models.metadata import read_metadata

FORMATS = ("implicit", "math-shepherd", "rlhflow", "token-classification", "orm")
FORMAT_HELP = {
    "implicit": "an implicit PRM: beta * log(pi/pi_ref) per step (ours, EurusPRM; --ref, --beta)",
    "math-shepherd": "P(+) against P(-) at a step tag 'ки' after each step (Math-Shepherd; step-tag PRMs trained here)",
    "rlhflow": "P(+) at the assistant turn after each step of a multi-turn chat (RLHFlow Llama3.1-8B PRMs)",
    "token-classification": "a 2-label head at a separator token after each step (Qwen2.5-Math-PRM: <extra_0>)",
    "orm": "a sequence-classification reward model: one score per response (Skywork-Reward style)",
}


def formats_text() -> str:
    return "; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items())


def raw_config(spec: str) -> dict | None:
    """The checkpoint's config.json as a dict (local dir, or the hub's file), None when it has none (an adapter)."""
    path = Path(resolve(spec))
    if path.is_dir():
        return read_json_file(path / "config.json") if (path / "config.json").is_file() else None
    try:
        from transformers import PretrainedConfig

        return PretrainedConfig.get_config_dict(str(spec))[0]
    except Exception:  # noqa: BLE001 - no network or no such repo: the loader says so when it tries
        return None


def head_format(config: dict | None) -> str | None:
    """'token-classification' or 'orm' from the config's architectures, None for a causal LM or unknown."""
    archs = (config or {}).get("architectures") or []
    for a in archs:
        if a.endswith("ForTokenClassification") or "ProcessRewardModel" in a:
            return "token-classification"
        if a.endswith("ForSequenceClassification"):
            return "orm"
    return None


def detect_format(spec: str, implicit_settings: bool = False) -> str:
    """The format of `spec` for `--format auto` (see the module docstring); ConfigError when it cannot tell."""
    path = resolve(spec)
    if Path(path).is_dir():
        meta = read_metadata(path)
        if meta is not None:
            return "math-shepherd" if meta.kind == "step_tag" else "implicit"
    config = raw_config(spec) if adapter_base(path) is None else None
    found = head_format(config)
    if found:
        return found
    if implicit_settings:
        return "implicit"
    what = ("a LoRA adapter" if adapter_base(path) is not None else
            "a plain causal LM" if config is not None else "a checkpoint whose config could not be read")
    raise ConfigError(f"'{spec}' is {what}: several formats score such a model and --format auto does not guess. "
                      f"Pass --format with one of: {formats_text()}")

