"""The shipped accelerate configs load as accelerate configs, with the engine and process counts they promise."""
from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


@pytest.mark.parametrize("name, engine, processes, machines", [
    ("ddp.yaml", "MULTI_GPU", 8, 1),
    ("fsdp.yaml", "FSDP", 8, 1),
    ("deepspeed_zero3_offload.yaml", "DEEPSPEED", 8, 1),
    ("multi_node.yaml", "FSDP", 16, 2),
])
def test_config_loads(name, engine, processes, machines):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONFIGS / name))
    assert cfg.distributed_type.name == engine
    assert cfg.num_processes == processes and cfg.num_machines == machines
    assert cfg.mixed_precision == "bf16"
    if engine == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2
        assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    if engine == "DEEPSPEED":
        ds = cfg.deepspeed_config
        assert ds["zero_stage"] == 3 and ds["offload_param_device"] == "cpu" and ds["offload_optimizer_device"] == "cpu"


def test_memory_estimate_arithmetic():
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_estimate", CONFIGS.parents[1] / "benchmarks" /
                                                  "memory_estimate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = {(r[0], r[1], r[2]): r for r in mod.rows(8)}
    full_ddp_1b = rows[("Llama-3.2-1B", "DDP", "full")]
    assert full_ddp_1b[3] == pytest.approx(16 * 1.236e9 / 2**30)  # 18.4 GiB
    assert full_ddp_1b[4] == pytest.approx(18 * 1.236e9 / 2**30)  # + bf16 reference
    fsdp_8b = rows[("Llama-3.1-8B", "FSDP full shard, 8 GPUs", "full")]
    assert fsdp_8b[3] == pytest.approx(16 * 8.03e9 / 8 / 2**30)
