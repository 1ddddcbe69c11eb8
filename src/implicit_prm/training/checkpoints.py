"""Training state on disk: resumable accelerate checkpoints, restoring the newest, and the final model (its weights in
the saved precision, its model card, its metadata)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..core.io import read_json_file, write_json
from ..models.loading import hub_id
from ..models.metadata import METADATA_FILE, PRMMetadata, write_metadata
from .card import RunFacts, write_card

SAVE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def checkpoints(out: Path) -> list[Path]:
    """Finished checkpoints (step_K dirs, oldest first); a `.tmp` one was cut off mid-save."""
    d = out / "checkpoints"
    return sorted(p for p in d.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")) if d.exists() else []


def is_finished(out: Path) -> bool:
    """The final model's metadata is written last, so it marks a finished run."""
    return (out / METADATA_FILE).exists()


def save_checkpoint(acc, out: Path, step: int, keep: int) -> None:
    """accelerate state (model, optimizer, scheduler, RNG) into step_K.tmp, renamed when complete."""
    tmp = out / "checkpoints" / f"step_{step:07d}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        write_json(tmp / "trainer_state.json", {"step": step})
        os.replace(tmp, tmp.with_suffix(""))
        for old in checkpoints(out)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def restore(acc, out: Path) -> int:
    """Load the newest checkpoint into the prepared model, optimizer and scheduler; the step to go on from (0 if
    there is none)."""
    found = checkpoints(out)
    if not found:
        return 0
    acc.load_state(str(found[-1]))
    step = json.loads((found[-1] / "trainer_state.json").read_text())["step"]
    if acc.is_main_process:
        print(f"[implicit-prm] resumed from {found[-1]} (step {step})", flush=True)
    return step


def save_final(acc, model, tok, out: Path, meta: PRMMetadata, run: RunFacts) -> None:
    """Save a model that from_pretrained (or peft) loads, its model card (README.md) and its metadata, written last
    to mark completion; the checkpoints are then removed. A full fine-tune's weights are saved in
    run.save_precision; a LoRA adapter as trained, its config naming the base by hub id where there is one."""
    state = acc.get_state_dict(model)  # gathers shards under FSDP/DeepSpeed
    if acc.is_main_process:
        lm = acc.unwrap_model(model).lm
        state = {k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")}
        if not meta.lora:
            state = cast_floats(state, SAVE_DTYPES[run.save_precision])
        tmp = out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        lm.save_pretrained(tmp, state_dict=state)
        if meta.lora:
            name_adapter_base(tmp, meta.base_model)
        else:
            record_dtype(tmp / "config.json", SAVE_DTYPES[run.save_precision])
        tok.save_pretrained(tmp)
        write_card(tmp, meta, run, bool(getattr(tok, "chat_template", None)))  # over the one peft writes
        write_metadata(tmp, meta)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == METADATA_FILE):  # metadata last: marks completion
            os.replace(f, out / f.name)
        tmp.rmdir()
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        print(f"[implicit-prm] saved {'LoRA adapter' if meta.lora else 'model'} to {out}", flush=True)
    acc.wait_for_everyone()


def cast_floats(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict with its floating-point tensors in `dtype`; tensors that share storage (tied embeddings)
    still share it, so save_pretrained still sees them as tied."""
    if all(v.dtype == dtype or not v.is_floating_point() for v in state.values()):
        return state
    cast: dict[tuple, torch.Tensor] = {}
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if key not in cast:
            cast[key] = v.to(dtype)
        out[k] = cast[key]
    return out


def record_dtype(config_path: Path, dtype: torch.dtype) -> None:
    """config.json names the saved weights' dtype (save_pretrained writes the model's, fp32), so that
    from_pretrained(dtype="auto") loads them as saved."""
    config = read_json_file(config_path)
    keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]  # transformers >= 4.56 writes dtype
    write_json(config_path, {**config, **{k: str(dtype).removeprefix("torch.") for k in keys}})


def name_adapter_base(adapter_dir: Path, base: str) -> None:
    """Record the base by its hub id in adapter_config.json's base_model_name_or_path (peft writes the local path
    it was loaded from: for the embedded model, a cache folder), so the adapter loads elsewhere; models/loading.py
    resolve maps the id back to the local copy here."""
    hub = hub_id(base)
    if hub is not None:
        path = adapter_dir / "adapter_config.json"
        write_json(path, {**read_json_file(path), "base_model_name_or_path": hub})
