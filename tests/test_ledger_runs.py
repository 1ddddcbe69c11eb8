"""FLOPs ledgers that the commands write: exact token counts of a tiny train and score run."""
from __future__ import annotations

import json

from implicit_prm.data import read_samples
from implicit_prm.flops.counting import compute_params
from implicit_prm.models.loading import load_model, load_tokenizer
from implicit_prm.scoring.score import ScoreConfig, score
from implicit_prm.steps.encoding import Encoder, encode_samples
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train


def test_train_and_score_ledgers_count_every_token_exactly(tmp_path, builtin_data, tiny_model):
    samples = read_samples(builtin_data)
    lengths = [len(e) for e in encode_samples(Encoder(load_tokenizer(tiny_model), "auto", 1024), samples)]
    n = len(samples) // 4 * 4  # whole batches of 4; the remainder of the epoch is dropped
    out = train(TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), model=tiny_model, batch_size=4,
                            epochs=2, precision="fp32", progress=False, checkpoint_every=0,
                            logprob_cache=str(tmp_path / "c.sqlite")))
    led = json.loads((out / "flops.json").read_text())
    P = compute_params(load_model(tiny_model))
    plan = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(plan) == 2 * n // 4
    trained = led["kinds"]["train"]
    # every epoch trains the tokens of n responses (which n depends on the shuffle, so compare the total of the
    # tokens the log counted, which train() sums independently of the ledger)
    assert trained["tokens"] == plan[-1]["tokens"]
    assert trained["flops"]["weights"] == 6 * P * trained["tokens"]
    assert led["kinds"]["reference"]["tokens"] == sum(lengths) and led["kinds"]["reference"]["phase"] == "training"
    assert led["kinds"]["reference"]["flops"]["weights"] == 2 * P * sum(lengths)
    assert led["total_flops"] == sum(v["flops"]["total"] for v in led["kinds"].values())

    scored = score(ScoreConfig(input=str(builtin_data), output=str(tmp_path / "s.jsonl"), prm=str(out),
                               precision="fp32", progress=False, logprob_cache=str(tmp_path / "c.sqlite")))
    sled = json.loads((tmp_path / "s.jsonl.flops.json").read_text())
    assert scored.exists() and sled["kinds"]["score"]["tokens"] == sum(lengths)
    assert sled["kinds"]["reference"]["tokens"] == sum(lengths) and sled["command"] == "score"
    assert sled["kinds"]["score"]["context_sum"] == sum(t * (t + 1) // 2 for t in lengths)
