"""What a PRM catches, per kind of mistake, on a scored file of built-in data (its `error_kind`, `first_error`).

For each error kind k of the wrong responses:
- `p_correct_above`: over the pairs (a correct response, a wrong response of kind k) of the same problem, the
  fraction where the correct one has the higher min step reward (ties count one half): the within-problem ranking
  best-of-N needs, split by what went wrong;
- `error_step_shift`: the mean reward of the first wrong step minus the mean reward of every step of the correct
  responses (negative: the PRM marks that step down);
- `d_prime`: that shift over the standard deviation of the correct responses' step rewards (how far the wrong step
  stands out of the noise of the right ones).
A step reward at the wrong step measures the token-level signal; `p_correct_above` measures what survives the min
over a response's steps. Usage: python experiments/error_kinds.py SCORED.jsonl [...]
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from implicit_prm.core.io import read_json_records


def error_kinds(path: str | Path) -> dict:
    """{kind: {"n", "p_correct_above", "error_step_shift", "d_prime"}} of one scored file (see the module doc)."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for _, rec in read_json_records(Path(path)):
        by_problem[rec.get("problem_id", rec.get("prompt"))].append(rec)
    good_steps = np.array([s for recs in by_problem.values() for r in recs if bool(r["correctness"])
                           for s in r["step_rewards"]], dtype=float)
    pairs: dict[str, list[float]] = defaultdict(list)
    shifts: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for recs in by_problem.values():
        good = np.array([r["scores"]["min"] for r in recs if bool(r["correctness"])], dtype=float)
        for r in recs:
            if bool(r["correctness"]):
                continue
            kind = str(r.get("error_kind"))
            counts[kind] += 1
            if len(good):
                bad = float(r["scores"]["min"])
                pairs[kind].extend(((good > bad) + 0.5 * (good == bad)).tolist())
            first = int(r.get("first_error", -1))
            if 0 <= first < len(r["step_rewards"]):
                shifts[kind].append(float(r["step_rewards"][first]))
    mean, sd = (float(good_steps.mean()), float(good_steps.std())) if len(good_steps) else (None, None)
    out = {}
    for kind in sorted(counts, key=lambda k: -counts[k]):
        shift = float(np.mean(shifts[kind])) - mean if shifts[kind] and mean is not None else None
        out[kind] = {"n": counts[kind], "p_correct_above": float(np.mean(pairs[kind])) if pairs[kind] else None,
                     "error_step_shift": shift,
                     "d_prime": shift / sd if shift is not None and sd else None}
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg, json.dumps(error_kinds(arg), indent=1))
