"""`DeviceSettings`: where a command's models run and which attention kernel they load with, the group every
command that runs a model shares (`--device`, `--attn-implementation`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import field
from ..core.distributed import default_device
from ..core.errors import ConfigError


@dataclass(kw_only=True)
class DeviceSettings:
    device: str = field("auto", help="where the models run: auto (the accelerator when present: CUDA, XPU or MPS; "
                                     "under torchrun / accelerate launch, each process's own), cpu, cuda, cuda:N")
    attn_implementation: str = field("auto", help="attention kernel passed to from_pretrained: auto (eager on a "
                                                  "CPU, where it is faster at short lengths; sdpa elsewhere), sdpa, "
                                                  "eager, flash_attention_2, ...")

    def torch_device(self, launched: torch.device | None = None) -> torch.device:
        """The device to put models on: `launched` (a process group's device) or the default for 'auto'."""
        if self.device == "auto":
            return launched if launched is not None else default_device()
        try:
            return torch.device(self.device)
        except RuntimeError as e:
            raise ConfigError(f"field 'device': {self.device!r} is not a device ({e})") from None
