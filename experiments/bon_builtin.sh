#!/usr/bin/env bash
# Best-of-N (N = 1..16) on held-out built-in problems: a trained CE implicit PRM against the untrained model used
# as a reference-free scorer, majority voting, weighted majority, random and pass@N.
# Usage: experiments/bon_builtin.sh PRM_DIR [out dir]
set -euo pipefail
PRM=${1:?trained PRM dir}
OUT=${2:-runs/bon_builtin}
mkdir -p "$OUT"
implicit-prm data --output "$OUT/test.jsonl" --n-problems 60 --samples-per-problem 16 --seed 1002 --no-balance
time implicit-prm score --prm "$PRM" --input "$OUT/test.jsonl" --output "$OUT/prm.jsonl"
# The untrained model's own log-probs were cached by the reference pass above, so with the PRM's prompt format
# (its system prompt) this costs no forward pass.
SP=$(python -c "import json,sys; m=json.load(open(sys.argv[1])); print('' if m.get('system_prompt') is None else 'x')" "$PRM/implicit_prm.json")
SP_ARGS=()
[ -n "$SP" ] && SP_ARGS=(--system-prompt "$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['system_prompt'])" "$PRM/implicit_prm.json")")
time implicit-prm score --prm smollm2-135m --reference-free "${SP_ARGS[@]}" --input "$OUT/test.jsonl" --output "$OUT/untrained.jsonl"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
a = [json.loads(l) for l in open(f"{out}/prm.jsonl")]
b = [json.loads(l) for l in open(f"{out}/untrained.jsonl")]
with open(f"{out}/both.jsonl", "w") as f:
    for x, y in zip(a, b):
        assert x["response"] == y["response"]
        x["scores"] = {"implicit_prm": x["scores"], "untrained_ref_free": y["scores"]}
        f.write(json.dumps(x) + "\n")
PY
time implicit-prm eval bon --input "$OUT/both.jsonl" --ns 1 2 4 8 16
time implicit-prm eval outcome --input "$OUT/both.jsonl"
time implicit-prm eval steps --input "$OUT/prm.jsonl" --split-half
time implicit-prm report --output "$OUT/report.html" --bon "$OUT/both.bon.json" --outcome "$OUT/both.outcome.json" \
  --steps "$OUT/prm.steps.json" --scored "$OUT/prm.jsonl"
