#!/usr/bin/env bash
# A first check of the paper's central claim on human step labels: train a CE implicit PRM from the embedded model
# on the OUTCOME labels only (final_answer_correct) of ProcessBench math, then measure step-error F1 on ProcessBench
# gsm8k (threshold tuned on a seeded half, measured on the other), against the untrained model used as a
# reference-free scorer (experiments/processbench_untrained_baseline.sh: F1 33.5 step_reward, 23.6 q_value).
#
# Laptop budget: 160 ProcessBench math solutions (80 right, 80 wrong, drawn at random with seed 0 among those
# whose prompt + solution fit in 640 tokens with the chat template), LoRA r=16, lr 1e-4, beta 0.5, one epoch
# (20 steps of 8). The default system prompt is kept, so the gsm8k reference log-probs of the baseline run are
# reused from the cache.
# Usage: experiments/processbench_outcome_prm.sh [path/to/processbench] [out dir]
set -euo pipefail
PB=${1:-../shared/data/processbench}
OUT=${2:-runs/processbench_outcome_prm}
N=${N:-160}
mkdir -p "$OUT"
[ -f "$OUT/train.jsonl" ] || python - "$PB/math.json" "$OUT/train.jsonl" "$N" <<'PY'
import json, random, sys
from implicit_prm.encoding import Encoder
from implicit_prm.io import write_jsonl
from implicit_prm.models import DEFAULT_MODEL, load_tokenizer
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
enc = Encoder(load_tokenizer(DEFAULT_MODEL), "auto", 640, "skip", None)
text = lambda r: "\n\n".join(r["steps"])
fits = [r for r in json.load(open(src)) if enc.encode(r["problem"], text(r), [(0, len(text(r)))]) is not None]
rng = random.Random(0)
pick = []
for label in (True, False):
    group = [r for r in fits if r["final_answer_correct"] == label]
    pick += rng.sample(group, n // 2)
rng.shuffle(pick)
# Only what outcome-label training may see: the problem, the steps and the final-answer label.
write_jsonl(dst, [{"problem": r["problem"], "steps": r["steps"], "final_answer_correct": r["final_answer_correct"]}
                  for r in pick])
print(f"{len(fits)} of the math solutions fit in 640 tokens; wrote {len(pick)} to {dst}")
PY
time implicit-prm train --data "$OUT/train.jsonl" --output "$OUT/prm" --objective ce --lora --lr 1e-4 --beta 0.5 \
  --max-length 640 --checkpoint-every 8
time implicit-prm score --prm "$OUT/prm" --input "$PB/gsm8k.json" --output "$OUT/gsm8k.jsonl"
for signal in q_value step_reward; do
  implicit-prm eval steps --input "$OUT/gsm8k.jsonl" --split-half --signal $signal --output "$OUT/gsm8k.$signal.steps.json"
done
