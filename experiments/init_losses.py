"""First logged loss of each objective at initialization (policy == reference) against its closed form.

    python experiments/init_losses.py [--model smollm2-135m] [--precision auto]

Trains one step of CE, DPO, NCA and KTO on a small built-in set and prints the first logged loss.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.losses import closed_form_init_loss
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--precision", "--dtype", default="auto")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "d.jsonl"
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=8, samples_per_problem=2, seed=5))
    rows = []
    for obj in ("ce", "dpo", "nca", "kto"):
        out = train(TrainConfig(data=str(data), output=str(tmp / obj), model=args.model, objective=obj,
                                batch_size=8, max_steps=1, precision=args.precision, logprob_cache=str(tmp / "ref.sqlite"),
                                progress=False, checkpoint_every=0))
        first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])["loss"]
        rows.append((obj, first, closed_form_init_loss(obj)))
    print(f"\n{'objective':10s} {'first loss':>12s} {'closed form':>12s} {'|diff|':>10s}")
    for obj, got, want in rows:
        print(f"{obj:10s} {got:12.6f} {want:12.6f} {abs(got - want):10.2e}")


if __name__ == "__main__":
    main()
