"""Per-GPU memory estimate for training an implicit PRM under each accelerate config, with and without the
reference cache. Arithmetic, not a measurement: it prints the table quoted in docs/scaling.md.

Bytes per policy parameter, as `implicit-prm train` holds them (fp32 weights, bf16 autocast):
  full fine-tune: 4 (weights) + 4 (grads) + 8 (AdamW moments) = 16;   LoRA: 4 (frozen base; adapters ~1%).
A frozen reference model held through training, as the naive loop does: 2 bytes/parameter in bf16.
With the reference cache the reference costs no weights during training: its log-probs are computed once before
the first step (a full fine-tune uses the not-yet-updated policy for it; LoRA uses the base with the adapter
disabled), then read back as 4 bytes per response token.
Activations come on top (they scale with batch x length; --gradient-checkpointing cuts them to one layer's worth).

    python benchmarks/memory_estimate.py [--gpus-per-node 8] [--gpu-gib 80]
"""
from __future__ import annotations

import argparse

MODELS = {"Llama-3.2-1B": 1.236e9, "Llama-3.1-8B": 8.030e9, "Llama-3.1-70B": 70.55e9}
LAYERS = {"Llama-3.2-1B": 16, "Llama-3.1-8B": 32, "Llama-3.1-70B": 80}
GIB = 2**30


def rows(gpus: int) -> list[tuple]:
    out = []
    for name, p in MODELS.items():
        layer = p / LAYERS[name]
        for config, shards in (("DDP", 1), (f"FSDP full shard, {gpus} GPUs", gpus),
                               (f"FSDP full shard, {2 * gpus} GPUs (2 nodes)", 2 * gpus),
                               (f"ZeRO-3 + CPU offload, {gpus} GPUs", None)):
            for mode, per_param in (("full", 16), ("LoRA", 4)):
                if shards is None:  # parameters and optimizer on CPU; the GPU holds about two layers in bf16
                    gpu = 2 * 2 * layer / GIB
                    ref_naive = 2 * 2 * layer / GIB
                    cpu = (per_param + 2) * p / GIB
                    out.append((name, config, mode, gpu, gpu + ref_naive, f"CPU RAM per node {cpu:,.0f} GiB"))
                    continue
                gpu = per_param * p / shards / GIB
                ref = 2 * p / shards / GIB
                out.append((name, config, mode, gpu, gpu + ref, ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--gpu-gib", type=float, default=80)
    args = ap.parse_args()
    print(f"| policy | config | training | per GPU, with the reference cache (GiB) | per GPU, frozen reference held "
          f"(naive) (GiB) | fits {args.gpu_gib:g} GiB (cache / naive) | note |")
    print("|---|---|---|---|---|---|---|")
    for name, config, mode, cached, naive, note in rows(args.gpus_per_node):
        fits = "/".join("yes" if x < 0.85 * args.gpu_gib else "no" for x in (cached, naive))
        print(f"| {name} | {config} | {mode} | {cached:,.1f} | {naive:,.1f} | {fits} | {note} |")
    print("\nStates only: add activations. 'fits' leaves 15% of the card for activations and the allocator.")


if __name__ == "__main__":
    main()
