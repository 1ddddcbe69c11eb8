"""Numeric precision: whether bf16 is fast on a device, what `--precision auto` picks, and the autocast context."""
from __future__ import annotations

import contextlib

import torch


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 pays off on CUDA with bf16 support, and on CPUs with native bf16 (AVX512-BF16/AMX); not on AVX2 CPUs,
    where it is several times slower than fp32 (docs/performance.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """'auto' -> 'bf16' where it is fast on this device, else 'fp32'."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast for 'bf16' (or 'auto' where bf16 is fast); plain fp32 otherwise. Weights stay fp32."""
    if resolve_precision(device, precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def weights_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype to load inference weights in: bf16 on an accelerator where `precision` resolves to bf16 (half the
    memory, and autocast runs in bf16 anyway), fp32 elsewhere (a CPU keeps fp32 weights and autocasts)."""
    device = torch.device(device)
    return torch.bfloat16 if device.type != "cpu" and resolve_precision(device, precision) == "bf16" else torch.float32


# Optimizer steps from which `--compile auto` compiles the decoder: where the measured saving per step pays back the
# compile time within the run. CPU: measured on a 2-core AVX512-BF16 EPYC (SmolLM2-135M, LoRA r16, bf16 autocast,
# 8 responses of 120-200 tokens a step): eager 220 tokens/s, compiled 282 (1.28x, about 1.2 s saved a step), but
# the compile took 257 s and a recompile when the shapes turned dynamic 415 s more, so it pays back after about
# 500 steps; the demo trains 50 to 100. CUDA: an estimate (compiles take about a minute on a GPU host's cores),
# not measured on a GPU here.
COMPILE_MIN_STEPS = {"cpu": 600, "cuda": 200}


def resolve_compile(device: torch.device, setting: str, steps: int) -> bool:
    """Whether to torch.compile the decoder for a training run of `steps` optimizer steps: 'on' and 'off' as
    given; 'auto' on where COMPILE_MIN_STEPS says the run is long enough to pay back the compile time."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    return steps >= COMPILE_MIN_STEPS.get(torch.device(device).type, float("inf"))
