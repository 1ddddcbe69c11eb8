#!/usr/bin/env bash
# GPU benchmark (at most about 8 minutes on one H100/H200): random-initialized Llama-3.2-1B and Llama-3.1-8B
# shaped models in bf16, no weights or network needed. Writes gpu.json to $OUT if set, else benchmarks/results/.
# Usage: benchmarks/gpu.sh            (on the GPU machine; $PYTHON picks the interpreter, default python)
#        benchmarks/gpu.sh --tiny     (tiny configs: checks the script on a CPU in about a minute)
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
exec timeout 480 "${PYTHON:-python}" gpu_bench.py "$@"
