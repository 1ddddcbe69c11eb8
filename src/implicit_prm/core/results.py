"""A command's outputs: written with the resolved config beside them (<output>.config.json), both atomically; the
machine a result was measured on; plain-text tables for the terminal."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Callable

from .config import save_config
from .io import write_json
from .precision import bf16_is_fast


def config_path(output: str | os.PathLike) -> Path:
    """Where the config of a command's output goes: <output>.config.json beside it."""
    output = Path(output)
    return output.with_name(output.name + ".config.json")


def write_result(output: str | os.PathLike, result: Any, cfg,
                 write: Callable[[Path, Any], Any] = write_json) -> Any:
    """Write `result` to `output` with `write` (default: indented JSON), then `cfg` to config_path(output); returns
    what `write` returns (write_jsonl: the number of records).

    Each file is written atomically, the config last: an output with its config beside it is a finished one.
    """
    output = Path(output)
    written = write(output, result)
    save_config(cfg, config_path(output))
    return written


def machine() -> dict:
    """What a measured result depends on: the CPU model (and whether it has native bf16, which `--precision auto`
    follows), the GPU if any, torch, its threads and the platform. Stamped on every committed result."""
    import torch


    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_bf16_native": bf16_is_fast(torch.device("cpu")),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform()}


def text_table(rows: list[list[str]]) -> list[str]:
    """Plain-text table lines: the first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [row[0].ljust(widths[0]) + "".join("  " + c.rjust(w) for c, w in zip(row[1:], widths[1:])) for row in rows]
