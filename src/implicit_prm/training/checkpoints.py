"""Training state on disk: resumable accelerate checkpoints, restoring the newest, and the final model."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..core.io import write_json
from ..models.metadata import METADATA_FILE, PRMMetadata, write_metadata


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


def save_final(acc, model, tok, out: Path, meta: PRMMetadata) -> None:
    """Save a model that from_pretrained (or peft) loads, plus its metadata, written last to mark completion;
    the checkpoints are then removed."""
    state = acc.get_state_dict(model)  # gathers shards under FSDP/DeepSpeed
    if acc.is_main_process:
        lm = acc.unwrap_model(model).lm
        state = {k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")}
        tmp = out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        lm.save_pretrained(tmp, state_dict=state)
        tok.save_pretrained(tmp)
        write_metadata(tmp, meta)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == METADATA_FILE):  # metadata last: marks completion
            os.replace(f, out / f.name)
        tmp.rmdir()
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        print(f"[implicit-prm] saved {'LoRA adapter' if meta.lora else 'model'} to {out}", flush=True)
    acc.wait_for_everyone()
