#!/usr/bin/env bash
# Fill .gpu-wheels/ with the wheels (Python 3.12, manylinux x86_64, the versions in constraints.txt) of the packages
# benchmarks/gpu.sh needs that the GPU machine lacks: FastAPI and uvicorn for `serve`, math-verify for grading.
# About 4 MB; the folder is git-ignored, so name it in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PIP:-.venv/bin/pip}" download -q --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --no-deps -c constraints.txt -d .gpu-wheels \
  fastapi starlette pydantic pydantic-core annotated-types typing-inspection anyio sniffio h11 click uvicorn \
  math-verify latex2sympy2_extended antlr4-python3-runtime
ls .gpu-wheels
