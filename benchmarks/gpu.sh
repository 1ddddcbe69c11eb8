#!/usr/bin/env bash
# The GPU check (at most 8 minutes on one H100/H200; no weights or network needed), in three parts:
# 1. gpu_bench.py (about 4 minutes): scoring and training throughput and MFU of random-initialised
#    Llama-3.2-1B and Llama-3.1-8B shaped models in bf16; writes gpu.json;
# 2. gpu_commands.py (2-3 minutes, one torch.compile included): every command (train, score, rollout, search,
#    serve) on CUDA through the CLI, each checked to run its models there and to agree with the same run on the
#    CPU within bf16 tolerance, and training's --share-prompts and --compile on; writes gpu_commands.json;
# 3. gpu_kernels.py (under a minute): the CPU speed work's kernels on the device: the fused LM-head log-probs
#    (HeadLogProbs) against the naive log-softmax in fp32 and bf16, its memory on a 128k-vocabulary head, and the
#    attention kernel `--attn-implementation auto` picks and loads; writes gpu_kernels.json.
# Both write to $OUT if set, else benchmarks/results/. The packages the GPU machine lacks (the server's, math-verify)
# install first from .gpu-wheels/ when it is there (benchmarks/gpu_wheels.sh fills it; carry it to the machine).
# Usage: benchmarks/gpu.sh            (on the GPU machine; $PYTHON picks the interpreter, default python)
#        benchmarks/gpu.sh --tiny     (tiny models: checks the script on a CPU in about two minutes)
set -uo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
if [ "${1:-}" != "--tiny" ]; then
  nvidia-smi || true
  "$PY" -c "import sys, torch, transformers; print(sys.version, 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
  "$PY" -m pip list 2>/dev/null
  if [ -d ../.gpu-wheels ]; then
    "$PY" -m pip install -q --no-index --find-links ../.gpu-wheels fastapi uvicorn math-verify || exit 1
  fi
fi
timeout 300 "$PY" gpu_bench.py "$@"; bench=$?
timeout 240 "$PY" gpu_commands.py "$@"; commands=$?
timeout 90 "$PY" gpu_kernels.py "$@"; kernels=$?
echo "gpu_bench.py exit $bench, gpu_commands.py exit $commands, gpu_kernels.py exit $kernels"
[ "$bench" -eq 0 ] && [ "$commands" -eq 0 ] && [ "$kernels" -eq 0 ]
