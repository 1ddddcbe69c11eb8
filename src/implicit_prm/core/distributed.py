"""The process group that scoring and the reference pass run under: a Protocol that accelerate's objects satisfy,
a single-process stand-in, and the launcher's state for sharded runs."""
from __future__ import annotations

import os
from typing import Protocol

import torch


class ProcessGroup(Protocol):
    """What scoring and the reference pass use of accelerate's `Accelerator` / `PartialState`."""

    device: torch.device
    process_index: int
    num_processes: int
    is_main_process: bool

    def wait_for_everyone(self) -> None: ...


class SingleProcess:
    """A ProcessGroup of one process (the Python API, and any run not launched by torchrun/accelerate)."""

    process_index, num_processes, is_main_process = 0, 1, True

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)

    def wait_for_everyone(self) -> None:
        pass


def default_device() -> torch.device:
    """The accelerator when there is one (CUDA, XPU, MPS), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    for name in ("xpu", "mps"):
        backend = getattr(torch, name, None) if name == "xpu" else getattr(torch.backends, name, None)
        if backend is not None and backend.is_available():
            return torch.device(name)
    return torch.device("cpu")


def has_accelerator() -> bool:
    """Whether a GPU-like device is present (else accelerate must be told cpu=True to run several CPU processes)."""
    return default_device().type != "cpu"


def is_main_rank() -> bool:
    """Whether this is the main process of a launch (torchrun / accelerate set RANK), before any group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def process_state() -> ProcessGroup:
    """accelerate's PartialState when launched as several processes (torchrun / accelerate launch), else one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        return PartialState(cpu=not has_accelerator())
    return SingleProcess(default_device())
