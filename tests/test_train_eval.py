"""Evaluation during training: the eval log's loss, accuracy and AUROC(min) at the last step equal those computed
independently from `score`'s rewards of the saved model on the same data."""
from __future__ import annotations

import json
import math

import pytest

from implicit_prm.core.errors import ConfigError
from implicit_prm.data import read_samples
from implicit_prm.rewards import auroc
from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train


def test_eval_during_training_matches_scoring_the_saved_model(tmp_path, builtin_data, tiny_model):
    out = train(TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), model=tiny_model, batch_size=4,
                            max_steps=3, lr=1e-3, precision="fp32", logprob_cache=str(tmp_path / "c.sqlite"),
                            checkpoint_every=0, progress=False, eval_data=str(builtin_data), eval_every=2, beta=0.5))
    evals = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [2, 3]  # every 2 steps, and at the end
    last = evals[-1]
    # independently: the saved model's rewards on the same responses, through the scorer
    prm = ImplicitPRM.from_pretrained(str(out), ref=tiny_model, precision="fp32", device="cpu")
    samples = read_samples(str(builtin_data))
    recs = prm.score_encoded(prm.encode(samples))
    r = [sum(x["step_rewards"]) for x in recs]  # beta * log(pi/pi_ref) of each response
    y = [s.label for s in samples]
    ce = [-math.log(1 / (1 + math.exp(-v))) if lab else -math.log(1 / (1 + math.exp(v))) for v, lab in zip(r, y)]
    assert last["eval_loss"] == pytest.approx(sum(ce) / len(ce), abs=1e-4)  # 24 responses, 6 equal batches
    assert last["eval_acc"] == pytest.approx(sum((v > 0) == bool(lab) for v, lab in zip(r, y)) / len(y))
    assert last["eval_auroc_min"] == pytest.approx(auroc([x["scores"]["min"] for x in recs], y), abs=1e-9)
    assert evals[0]["eval_loss"] != last["eval_loss"]  # the model moved between the two evaluations


def test_eval_every_needs_eval_data(tmp_path, builtin_data):
    with pytest.raises(ConfigError, match="'eval_every' needs 'eval_data'"):
        TrainConfig(data=str(builtin_data), output=str(tmp_path / "r"), eval_every=5)


@pytest.mark.parametrize("objective", ["kto", "dpo", "orm"])
def test_eval_for_every_kind_of_objective(tmp_path, builtin_data, tiny_model, objective):
    out = train(TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), model=tiny_model, batch_size=4,
                            max_steps=1, precision="fp32", logprob_cache=str(tmp_path / "c.sqlite"),
                            checkpoint_every=0, progress=False, eval_data=str(builtin_data), objective=objective))
    (rec,) = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
    assert rec["step"] == 1 and math.isfinite(rec["eval_loss"]) and 0 <= rec["eval_acc"] <= 1
    # the implicit objectives also rank responses by their lowest step reward; a step-tag model does not
    assert ("eval_auroc_min" in rec) == (objective != "orm")
