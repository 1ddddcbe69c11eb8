"""Training with each prompt computed once (--share-prompts): the packed layout on a worked case, the same summed
log-probs and gradients as the unshared batch, the grouped plan, and a training run."""
from __future__ import annotations

import json
import math

import pytest
import torch

from implicit_prm.models.loading import load_model
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.steps.batching import SharedPack
from implicit_prm.steps.encoding import Encoded
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import sequence_logps, train
from implicit_prm.training.plan import make_plan


def _enc(prompt, response):
    return Encoded(list(prompt), list(response), [0] * len(response), 1)


def test_pack_layout_worked_case():
    # prompt (5, 6) with responses (7, 8) and (9,); prompt (4,) with response (3, 2)
    seqs = [_enc([5, 6], [7, 8]), _enc([4], [3, 2]), _enc([5, 6], [9])]
    p = SharedPack(seqs, pad_id=0, device="cpu")
    assert p.ids.tolist() == [[5, 6, 7, 8, 9], [4, 3, 2, 0, 0]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 2, 0, 0]]
    # row 0: the prompt causal; response (7, 8) sees the prompt and itself; response (9,) the prompt and itself
    assert p.allowed[0].int().tolist() == [[1, 0, 0, 0, 0],
                                           [1, 1, 0, 0, 0],
                                           [1, 1, 1, 0, 0],
                                           [1, 1, 1, 1, 0],
                                           [1, 1, 0, 0, 1]]
    assert p.allowed[1].int().tolist() == [[1, 0, 0, 0, 0],
                                           [1, 1, 0, 0, 0],
                                           [1, 1, 1, 0, 0],
                                           [0, 0, 0, 1, 0],  # padding: itself only
                                           [0, 0, 0, 0, 1]]
    # 7 is predicted by the prompt's last state (flat 1), 8 by 7's (2), 9 by the prompt's last (1) again;
    # 3 by row 1's prompt (5 + 0), 2 by 3's (5 + 1)
    assert p.pred.tolist() == [1, 2, 1, 5, 6]
    assert p.targets.tolist() == [7, 8, 9, 3, 2]
    assert p.owner.tolist() == [0, 0, 2, 1, 1]
    assert p.sums(torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])).tolist() == [3.0, 24.0, 4.0]
    assert SharedPack.pays(seqs) and not SharedPack.pays(seqs[:2])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_sums_and_gradients_equal_unshared(tiny_model, attn):
    torch.manual_seed(0)
    a, b, c = [10, 11, 12, 13], [20, 21], [30, 31, 32]
    seqs = [_enc(a, [40, 41, 42]), _enc(b, [43]), _enc(a, [44, 45, 46, 47, 48]), _enc(c, [49, 50]),
            _enc(a, [51]), _enc(c, [52, 53, 54, 55])]
    model = TokenLogProbs(load_model(tiny_model, attn_implementation=attn))
    assert model.can_pack
    results = []
    for share in (False, True):
        model.zero_grad()
        lp = sequence_logps(model, seqs, pad_id=0, device="cpu", precision="fp32", share=share)
        (lp * torch.arange(1.0, 7.0)).sum().backward()  # a different weight per sequence
        results.append((lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lp0, g0), (lp1, g1) = results
    assert torch.allclose(lp0, lp1, atol=1e-5), (lp0, lp1)
    assert lp0.abs().min() > 0.1  # real log-probs, not zeros
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-4), name


def test_grouped_plan_keeps_prompts_together_and_covers_every_example():
    groups = ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3"]
    plan = make_plan(8, 4, epochs=2, seed=1, max_steps=None, groups=groups)
    assert len(plan) == 4
    for epoch in (plan[:2], plan[2:]):
        flat = [i for batch in epoch for i in batch]
        assert sorted(flat) == list(range(8))
        for batch in epoch:  # groups of 2 in batches of 4: each batch holds two whole groups
            assert sorted(groups[i] for i in batch)[::2] == sorted(groups[i] for i in batch)[1::2]
    assert plan == make_plan(8, 4, epochs=2, seed=1, max_steps=None, groups=groups)  # seeded
    assert plan != make_plan(8, 4, epochs=2, seed=2, max_steps=None, groups=groups)


def test_training_with_shared_prompts_starts_at_the_closed_form(tmp_path, builtin_data, tiny_model, monkeypatch):
    packed = []
    real = SharedPack.sums
    monkeypatch.setattr(SharedPack, "sums", lambda self, lp: packed.append(self.ids.shape) or real(self, lp))
    out = train(TrainConfig(data=str(builtin_data), output=str(tmp_path / "run"), model=tiny_model, batch_size=4,
                            lr=1e-3, precision="fp32", logprob_cache=str(tmp_path / "ref.sqlite"), progress=False,
                            checkpoint_every=0, max_steps=2, share_prompts=True, lora=True, lora_r=4))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert abs(log[0]["loss"] - math.log(2)) < 1e-4  # CE at init: policy = reference
    assert log[1]["loss"] != pytest.approx(log[0]["loss"], abs=1e-6)
    assert len(packed) == 2 and all(shape[0] < 4 for shape in packed)  # each step packed: fewer rows than 4
