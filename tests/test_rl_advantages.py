"""PRIME's maths against numbers worked out by hand: a batch of two groups of K = 2 with ragged lengths.

    mask      q = log pi_phi - log pi_ref (9 = padding, never read)   outcome
    row 0     [1, 1, 1]   [ 0.2, -0.1, 0.3]                           1
    row 1     [1, 1, 0]   [ 0.4,  0.2, 9  ]                           0
    row 2     [1, 0, 0]   [-0.9,  9,   9  ]                           1
    row 3     [1, 1, 1]   [ 0.1,  0.1, 0.1]                           1

Group 1 (rows 0, 1) has accuracy 0.5 and is kept; group 2 (rows 2, 3) has 1.0 and is filtered out.
"""
from __future__ import annotations

import math
import statistics

import pytest
import torch

from implicit_prm.rl.advantages import (
    accuracy_filter,
    batch_normalize,
    masked_whiten,
    pairwise_accuracy,
    prime_advantages,
    prm_loss,
    reverse_cumsum,
    rloo_outcome,
    rloo_process,
    token_rewards,
)

MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float64)
Q = torch.tensor([[0.2, -0.1, 0.3], [0.4, 0.2, 9.0], [-0.9, 9.0, 9.0], [0.1, 0.1, 0.1]], dtype=torch.float64)
REF = torch.zeros_like(Q)
OUTCOME = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
KEPT = torch.tensor([True, True, False, False])
R = token_rewards(Q, REF, MASK)  # the process rewards, padding zeroed


def approx(rows):
    return pytest.approx(torch.tensor(rows, dtype=torch.float64).flatten().tolist(), abs=1e-6)


def test_token_rewards_token_and_whole_granularity():
    assert R.flatten().tolist() == approx([[0.2, -0.1, 0.3], [0.4, 0.2, 0], [-0.9, 0, 0], [0.1, 0.1, 0.1]])
    whole = token_rewards(Q + 1.0, REF + 1.0, MASK, "whole")  # log-probs, not just their difference, go in
    assert whole.flatten().tolist() == approx([[0, 0, 0.4], [0, 0.6, 0], [-0.9, 0, 0], [0, 0, 0.3]])
    with pytest.raises(ValueError, match="granularity"):
        token_rewards(Q, REF, MASK, "step")


def test_reverse_cumsum_with_and_without_discount():
    assert reverse_cumsum(R).flatten().tolist() == approx(
        [[0.4, 0.2, 0.3], [0.6, 0.2, 0], [-0.9, 0, 0], [0.3, 0.2, 0.1]])
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert reverse_cumsum(x, 0.5).flatten().tolist() == approx([[2.75, 3.5, 3.0]])  # 1 + .5 (2 + .5 * 3)


def test_batch_norm_divides_by_the_largest_absolute_return_of_the_kept_rows():
    assert batch_normalize(R).flatten().tolist() == approx((R / (0.9 + 1e-6)).tolist())  # row 2's -0.9
    assert batch_normalize(R, KEPT).flatten().tolist() == approx((R / (0.6 + 1e-6)).tolist())  # row 1's 0.6


def test_rloo_process_baselines_code_and_eq5():
    # means over each row's own tokens: m0 = 0.4 / 3, m1 = 0.6 / 2; K = 2 so K / (K - 1) = 2
    m0, m1 = 0.4 / 3, 0.3
    code = rloo_process(R, MASK, 2, "code")
    assert code[:2].flatten().tolist() == approx([[2 * 0.2 - (m0 + m1), 2 * -0.1 - (m0 + m1), 2 * 0.3 - (m0 + m1)],
                                                  [2 * 0.4 - (m0 + m1), 2 * 0.2 - (m0 + m1), 0]])
    eq5 = rloo_process(R, MASK, 2, "eq5")
    assert eq5[:2].flatten().tolist() == approx([[0.2 - m1, -0.1 - m1, 0.3 - m1], [0.4 - m0, 0.2 - m0, 0]])
    # the same return at t = 0, different later
    assert code.sum(1).tolist() == pytest.approx(eq5.sum(1).tolist(), abs=1e-9)
    assert code.sum(1)[0].item() == pytest.approx(-0.5)  # R_0 - |y_0| m1 = 0.4 - 3 * 0.3
    assert not torch.allclose(reverse_cumsum(code)[0, 1:], reverse_cumsum(eq5)[0, 1:])
    # group 2: m2 = -0.9, m3 = 0.1
    assert eq5[2, 0].item() == pytest.approx(-0.9 - 0.1) and eq5[3].tolist() == approx([0.1 + 0.9] * 3)
    with pytest.raises(ValueError, match="K >= 2"):
        rloo_process(R, MASK, 1)


def test_rloo_outcome_at_the_last_token():
    out = rloo_outcome(OUTCOME, MASK, 2)
    assert out.flatten().tolist() == approx([[0, 0, 1], [0, -1, 0], [0, 0, 0], [0, 0, 0]])
    k4 = rloo_outcome(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.ones(4, 2), 4)
    assert k4[:, 1].tolist() == approx([1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3])


def test_masked_whiten_is_unbiased_and_zero_off_the_mask():
    v = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]], dtype=torch.float64)
    m = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.float64)
    sd = statistics.stdev([1.0, 2.0, 3.0])  # the unbiased one: 1.0
    assert masked_whiten(v, m).flatten().tolist() == approx([[(1 - 2) / sd, 0, 0], [(3 - 2) / sd, 0, 0]])
    with pytest.raises(ValueError, match="at least 2"):
        masked_whiten(v, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_accuracy_filter_keeps_groups_in_the_band():
    assert accuracy_filter(OUTCOME, 2).tolist() == KEPT.tolist()
    acc = torch.tensor([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0])  # K = 4 and 5 groups...
    assert accuracy_filter(acc[:16], 4).view(4, 4)[:, 0].tolist() == [False, True, True, False]  # 0, .25, .5, 1
    assert accuracy_filter(acc[16:], 4).tolist() == [True] * 4  # 0.75


def test_prime_advantages_by_hand():
    """Process rewards normalised by 0.6 (kept rows), code baseline, returns, plus the outcome RLOO returns, whitened
    over the 5 kept response tokens; filtered rows 0."""
    m0, m1, top = 0.4 / 3, 0.3, 0.6 + 1e-6
    c0 = [(2 * 0.2 - m0 - m1) / top, (2 * -0.1 - m0 - m1) / top, (2 * 0.3 - m0 - m1) / top]
    c1 = [(2 * 0.4 - m0 - m1) / top, (2 * 0.2 - m0 - m1) / top]
    ret0 = [c0[0] + c0[1] + c0[2] + 1, c0[1] + c0[2] + 1, c0[2] + 1]  # outcome RLOO +1 at row 0's last token
    ret1 = [c1[0] + c1[1] - 1, c1[1] - 1]  # -1 at row 1's last token
    vals = ret0 + ret1
    mean, sd = statistics.fmean(vals), statistics.stdev(vals)
    want = [[(v - mean) / math.sqrt(sd ** 2 + 1e-8) for v in ret0], [(v - mean) / math.sqrt(sd ** 2 + 1e-8)
                                                                    for v in ret1] + [0], [0, 0, 0], [0, 0, 0]]
    got = prime_advantages(R, OUTCOME, MASK, 2, KEPT)
    assert got.flatten().tolist() == approx(want)
    # zero process rewards: the outcome-only RLOO returns, whitened over the same tokens
    rloo = prime_advantages(torch.zeros_like(R), OUTCOME, MASK, 2, KEPT)
    o = [1, 1, 1, -1, -1]
    om, osd = statistics.fmean(o), statistics.stdev(o)
    assert rloo[:2].flatten().tolist() == approx([[(x - om) / osd for x in o[:3]], [(x - om) / osd for x in o[3:]]
                                                  + [0]])
    assert (prime_advantages(R, OUTCOME, MASK, 2, torch.zeros(4, dtype=torch.bool)) == 0).all()


def test_prm_loss_is_ce_on_the_summed_log_ratio():
    logps, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    r = [0.05 * 0.5, 0.05 * -1.0]
    want = (math.log(1 + math.exp(-r[0])) + math.log(1 + math.exp(r[1]))) / 2  # -log s(r0), -log(1 - s(r1))
    assert prm_loss(logps, ref, torch.tensor([1, 0])).item() == pytest.approx(want, abs=1e-6)


def test_pairwise_accuracy_by_group():
    scores = torch.tensor([0.3, 0.1, 0.2, 0.1, 0.5, 0.0, 0.4, 0.2, 0.1])
    correct = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1])
    # group 1: (0,1) right, (1,2) right -> 1; group 2: (0,1) wrong, (0,2) right -> 0.5; group 3: no pair -> 0.5
    assert pairwise_accuracy(scores, correct, 3).item() == pytest.approx((1 + 0.5 + 0.5) / 3)
