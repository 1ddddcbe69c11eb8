"""The reference pass: look up per-token reference log-probs in the cache, compute only the misses, share them."""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.precision import weights_dtype
from ..models.loading import fingerprint, load_model, resolve
from ..models.logprobs import TokenLogProbs
from ..steps.encoding import Encoded
from .cache import entry_key, open_cache
from .forward import response_logprobs


class RefTable:
    """Reference log-probs of a set of encoded responses, looked up by content."""

    def __init__(self, model_key: str, table: dict[str, np.ndarray]):
        self.model_key, self.table = model_key, table  # model_key: "<weights fingerprint>:<precision>"
        self.fingerprint = model_key.split(":")[0]

    def logps(self, enc: Encoded) -> np.ndarray:
        return self.table[entry_key(self.model_key, enc)]

    def sum(self, enc: Encoded) -> float:
        return float(self.logps(enc).astype(np.float64).sum())


def _stat_key(spec: str) -> str | None:
    """A key that changes whenever a local model's weight files change (None for hub ids)."""
    path = Path(resolve(spec))
    if not path.is_dir():
        return None
    parts = [str(path.resolve())]
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def adapter_disabled(lm):
    """Context in which a peft model computes with its base weights only (the LoRA reference)."""
    return lm.disable_adapter() if hasattr(lm, "disable_adapter") else contextlib.nullcontext()


def reference_logprobs(ref_spec: str, in_memory: TokenLogProbs | None, encs: Sequence[Encoded], pad_id: int, acc,
                       precision: str, cache_setting: str = "", batch_tokens: int = 8192,
                       show: bool = True, attn_implementation: str | None = None) -> RefTable:
    """Reference log-probs for `encs`, from the cache where present; the misses are computed once and stored.

    in_memory: a loaded model that holds the reference weights: the not-yet-trained policy when the reference is
    the starting model, or a LoRA model whose base (adapter disabled) is the reference. Then no second copy of the
    weights is loaded. Otherwise the
    reference model `ref_spec` is loaded only if some entry is missing, and freed afterwards. Under several
    processes each computes a shard of the misses and all receive the full table.
    """
    device = acc.device
    cache = open_cache(cache_setting, "")
    try:
        ref_model = None
        if in_memory is not None:
            fp = fingerprint(in_memory.lm)
        else:
            stat = _stat_key(ref_spec)
            fp = cache.get_fingerprint(stat) if (cache and stat) else None
            if fp is None:
                ref_model = TokenLogProbs(load_model(ref_spec, weights_dtype(device, precision),
                                                     attn_implementation=attn_implementation, device=device)).to(device)
                fp = fingerprint(ref_model.lm)
                if cache and stat:
                    cache.put_fingerprint(stat, fp)
        model_key = f"{fp}:{precision}"
        keys = [entry_key(model_key, e) for e in encs]
        table = cache.get(keys) if cache else {}
        uniq_missing = list(dict.fromkeys(k for k in keys if k not in table))
        by_key = {k: e for k, e in zip(keys, encs)}
        if uniq_missing:
            model = in_memory if in_memory is not None else ref_model
            if model is None:
                model = ref_model = TokenLogProbs(load_model(ref_spec, weights_dtype(device, precision),
                                                             attn_implementation=attn_implementation, device=device)).to(device)
            with adapter_disabled(model.lm):
                arrays = response_logprobs(model, [by_key[k] for k in uniq_missing], pad_id, device, precision,
                                           batch_tokens, desc="reference pass", show=show,
                                           shard=(acc.process_index, acc.num_processes))
            computed = [(k, a) for k, a in zip(uniq_missing, arrays) if a is not None]
            if acc.num_processes > 1:
                from accelerate.utils import gather_object

                computed = gather_object(computed)
            table.update(computed)
            if cache and acc.is_main_process:
                cache.put(computed)
            acc.wait_for_everyone()
    finally:
        if cache:
            cache.close()
    del ref_model
    return RefTable(model_key, table)
