#!/usr/bin/env bash
# ProcessBench (every split given) and PRMBench (a smoke check on the shared sample records) for two scorers:
# the embedded model used reference-free (beta * log pi) and the demo's trained PRM (`make demo` -> runs/demo/prm).
# One threshold per scorer, tuned on a seeded half of gsm8k (eval processbench); PRMBench at the default 0.5.
# Usage: experiments/processbench_prmbench.sh [data dir with processbench/, prmbench_samples/] [out dir] [splits...]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/processbench_prmbench}
shift 2 || true
SPLITS=${*:-gsm8k math}
export IMPLICIT_PRM_DATA=$DATA
mkdir -p "$OUT"
declare -A PRM=([untrained]="--prm smollm2-135m --reference-free" [demo]="--prm runs/demo/prm")
for who in untrained demo; do
  inputs=()
  for split in $SPLITS; do
    start=$(date +%s)
    implicit-prm score ${PRM[$who]} --input processbench:$split --output "$OUT/$who.$split.jsonl" --overlong truncate --no-progress
    echo "$who $split: scored in $(( $(date +%s) - start )) s"
    inputs+=("$OUT/$who.$split.jsonl")
  done
  implicit-prm eval processbench --inputs "${inputs[@]}" --output "$OUT/$who.processbench.json"
  start=$(date +%s)
  implicit-prm score ${PRM[$who]} --input "$DATA/prmbench_samples/samples.jsonl" --output "$OUT/$who.prmbench.jsonl" --no-progress
  echo "$who prmbench samples: scored in $(( $(date +%s) - start )) s"
  implicit-prm eval prmbench --input "$OUT/$who.prmbench.jsonl"
done
