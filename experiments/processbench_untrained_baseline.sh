#!/usr/bin/env bash
# The untrained embedded model as a reference-free scorer (beta * log pi) on ProcessBench gsm8k:
# step-error F1 with the threshold tuned on a seeded half and applied to the other half.
# Usage: experiments/processbench_untrained_baseline.sh [path/to/processbench] [out dir]
set -euo pipefail
PB=${1:-../shared/data/processbench}
OUT=${2:-runs/processbench_untrained}
mkdir -p "$OUT"
time implicit-prm score --prm smollm2-135m --reference-free --input "$PB/gsm8k.json" --output "$OUT/gsm8k.jsonl"
for signal in q_value step_reward; do
  time implicit-prm eval steps --input "$OUT/gsm8k.jsonl" --split-half --signal $signal --output "$OUT/gsm8k.$signal.steps.json"
done
