"""Hand-checked numbers for the objectives in implicit_prm.losses (CE / DPO / NCA / KTO / step BCE)."""
import math

import pytest
import torch

from implicit_prm.losses import (
    LOSSES,
    LossBatch,
    ce_loss,
    closed_form_init_loss,
    dpo_loss,
    kto_loss,
    nca_loss,
    step_bce_loss,
)

# Reference values used below (sigma = logistic function):
#   -log sigma(1)  = log(1 + e^-1) = 0.3132617
#   -log sigma(-1) = log(1 + e)    = 1.3132617
#   sigma(0.5) = 0.6224593,  sigma(1) = 0.7310586,  sigma(1.5) = 0.8175745
NLS1 = math.log1p(math.exp(-1.0))   # 0.3132617
NLSM1 = math.log1p(math.exp(1.0))   # 1.3132617


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def ce(logps, ref, labels, beta=0.05):
    return ce_loss(LossBatch(labels, logps, ref, beta))


def pair(fn, cw, cw_ref, cl, cl_ref, beta=0.05):
    """A paired batch: chosen rows, then rejected rows (labels 1..1, 0..0)."""
    n = cw.shape[0]
    return fn(LossBatch(torch.cat([torch.ones(n), torch.zeros(n)]), torch.cat([cw, cl]), torch.cat([cw_ref, cl_ref]),
                        beta))


def dpo(*args, **kw):
    return pair(dpo_loss, *args, **kw)


def nca(*args, **kw):
    return pair(nca_loss, *args, **kw)


def kto(logps, ref, labels, kl, kl_ref, beta=0.05, **weights):
    return kto_loss(LossBatch(labels, logps, ref, beta, kl_logps=kl, kl_ref_logps=kl_ref), **weights)


def test_reference_constants():
    assert NLS1 == pytest.approx(0.3132617, abs=1e-7)
    assert NLSM1 == pytest.approx(1.3132617, abs=1e-7)


def test_ce_hand_values():
    """logratio 2, beta 0.5 -> r = 1. Label 1: -log sigma(1) = 0.31326; label 0: -log(1 - sigma(1)) = 1.31326.
    Batch of both: mean = 0.81326."""
    loss, r, _ = ce(t(2.0), t(0.0), t(1.0), beta=0.5)
    assert loss.item() == pytest.approx(0.3132617, abs=1e-6)
    assert r.tolist() == [1.0]
    loss, _, _ = ce(t(2.0), t(0.0), t(0.0), beta=0.5)
    assert loss.item() == pytest.approx(1.3132617, abs=1e-6)
    loss, r, _ = ce(t(5.0, 3.0), t(3.0, 1.0), torch.tensor([True, False]), beta=0.5)
    assert loss.item() == pytest.approx(0.8132617, abs=1e-6)
    assert r.tolist() == [1.0, 1.0] and not r.requires_grad


def test_ce_gradient_signs():
    """d loss / d policy_logp = -beta (l - sigma(r)) / B: negative for label 1 (descent raises the log-prob),
    positive for label 0. At r = 0, beta 0.5, B = 2: -0.5 * 0.5 / 2 = -0.125 and +0.125."""
    pol = t(0.0, 0.0).requires_grad_()
    loss, _, _ = ce(pol, t(0.0, 0.0), t(1.0, 0.0), beta=0.5)
    loss.backward()
    assert pol.grad.tolist() == pytest.approx([-0.125, 0.125], abs=1e-9)


def test_ce_is_stable_for_large_rewards():
    loss, _, _ = ce(t(1e4), t(0.0), t(0.0), beta=1.0)  # -log sigma(-1e4) = 1e4, no inf
    assert loss.item() == pytest.approx(1e4)


def test_dpo_hand_values():
    """r_w = 0.5 * (3 - 1) = 1, r_l = 0.5 * (1 - 1) = 0: -log sigma(1) = 0.31326.
    Swapped (r_w - r_l = -1): -log sigma(-1) = 1.31326. Batch mean of both: 0.81326."""
    loss, r, _ = dpo(t(3.0), t(1.0), t(1.0), t(1.0), beta=0.5)
    assert loss.item() == pytest.approx(NLS1, abs=1e-6)
    assert r.tolist() == [1.0, 0.0]
    loss, _, _ = dpo(t(1.0), t(1.0), t(3.0), t(1.0), beta=0.5)
    assert loss.item() == pytest.approx(NLSM1, abs=1e-6)
    loss, r, _ = dpo(t(3.0, 1.0), t(1.0, 1.0), t(1.0, 3.0), t(1.0, 1.0), beta=0.5)
    assert loss.item() == pytest.approx(0.8132617, abs=1e-6)
    assert r.shape == (4,)


def test_dpo_gradient_signs():
    """Descent raises the chosen log-prob and lowers the rejected one."""
    cw, cl = t(0.0).requires_grad_(), t(0.0).requires_grad_()
    loss, _, _ = dpo(cw, t(0.0), cl, t(0.0), beta=0.1)
    loss.backward()
    assert cw.grad.item() < 0 < cl.grad.item()


def test_nca_hand_values():
    """r_w = 1, r_l = -1:  -log sigma(1) - 0.5 log sigma(-1) - 0.5 log sigma(1)
       = 0.3132617 + 0.5 * 1.3132617 + 0.5 * 0.3132617 = 1.1265234."""
    loss, r, _ = nca(t(2.0), t(0.0), t(-2.0), t(0.0), beta=0.5)
    assert loss.item() == pytest.approx(1.1265234, abs=1e-6)
    assert r.tolist() == [1.0, -1.0]


def test_nca_differs_from_dpo_on_shift():
    """DPO only sees r_w - r_l; NCA also sees absolute rewards: shifting both by +1 leaves DPO unchanged
    and changes NCA (r_w = 2, r_l = 0: log(1+e^-2) + 0.5 log(1+e^2) + 0.5 ln 2
    = 0.126928 + 1.063464 + 0.346574 = 1.536966, vs 1.126523 before the shift)."""
    d0, _, _ = dpo(t(2.0), t(0.0), t(-2.0), t(0.0), beta=0.5)
    d1, _, _ = dpo(t(4.0), t(0.0), t(0.0), t(0.0), beta=0.5)
    assert d0.item() == pytest.approx(d1.item())
    n1, _, _ = nca(t(4.0), t(0.0), t(0.0), t(0.0), beta=0.5)
    expected = math.log1p(math.exp(-2)) + 0.5 * math.log1p(math.exp(2)) + 0.5 * math.log(2)
    assert n1.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.536966, abs=1e-6)
    n0, _, _ = nca(t(2.0), t(0.0), t(-2.0), t(0.0), beta=0.5)
    assert n0.item() == pytest.approx(1.1265234, abs=1e-6)


def test_nca_gradient_signs():
    """Chosen log-prob pushed up, rejected pushed down (d/dr_l of -0.5 log sigma(-r_l) = 0.5 sigma(r_l) > 0)."""
    cw, cl = t(0.0).requires_grad_(), t(0.0).requires_grad_()
    loss, _, _ = nca(cw, t(0.0), cl, t(0.0), beta=1.0)
    loss.backward()
    # d/dr_w = -(1 - sigma(0)) + 0.5 sigma(0) = -0.25 ; d/dr_l = 0.5 sigma(0) = 0.25
    assert cw.grad.item() == pytest.approx(-0.25)
    assert cl.grad.item() == pytest.approx(0.25)


def test_kto_positive_kl_reference_point():
    """beta 0.5. KL pairs: beta * ([4, -2] - 0) = [2, -1], mean 0.5 -> z0 = 0.5.
    r = [1, -1], labels [1, 0]:
      desirable:   1 - sigma(1 - 0.5)    = 1 - 0.6224593 = 0.3775407
      undesirable: 1 - sigma(0.5 - (-1)) = 1 - 0.8175745 = 0.1824255
      mean = 0.2799831;  with w_D = 2, w_U = 0.5: (0.7550814 + 0.0912128) / 2 = 0.4231471."""
    args = (t(2.0, -2.0), t(0.0, 0.0), t(1.0, 0.0), t(4.0, -2.0), t(0.0, 0.0))
    loss, r, _ = kto(*args, beta=0.5)
    assert loss.item() == pytest.approx(0.2799831, abs=1e-6)
    assert r.tolist() == [1.0, -1.0]
    loss, _, _ = kto(*args, beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)
    assert loss.item() == pytest.approx(0.4231471, abs=1e-6)


def test_kto_negative_kl_is_clamped():
    """KL pairs: 0.5 * ([-4, 0] - 0) = [-2, 0], mean -1 -> clamped to z0 = 0.
    r = [1, -1]: 1 - sigma(1) = 0.2689414 for both, mean 0.2689414.
    (Without the clamp, z0 = -1 would give (1 - sigma(2) + 1 - sigma(0)) / 2 = 0.3096.)"""
    loss, _, _ = kto(t(2.0, -2.0), t(0.0, 0.0), t(1.0, 0.0), t(-4.0, 0.0), t(0.0, 0.0), beta=0.5)
    assert loss.item() == pytest.approx(0.2689414, abs=1e-6)


def test_kto_reference_point_carries_no_gradient():
    pol = t(2.0, -2.0).requires_grad_()
    kl_pol = t(4.0, -2.0).requires_grad_()
    loss, _, _ = kto(pol, t(0.0, 0.0), t(1.0, 0.0), kl_pol, t(0.0, 0.0), beta=0.5)
    g_pol, g_kl = torch.autograd.grad(loss, [pol, kl_pol], allow_unused=True)
    assert g_kl is None or torch.all(g_kl == 0)
    # desirable: -(beta/B) sigma'(0.5) < 0 (push up); undesirable: +(beta/B) sigma'(1.5) > 0 (push down)
    assert g_pol[0].item() < 0 < g_pol[1].item()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_init_loss_matches_closed_form(name):
    """At policy == reference every r is 0 (and every step logit 0): ce ln 2, dpo ln 2, nca 2 ln 2, kto 0.5,
    step_bce ln 2. Each objective reads what it needs from the same batch."""
    g = torch.Generator().manual_seed(0)
    a, b = -50 * torch.rand(8, generator=g), -50 * torch.rand(8, generator=g)
    labels = torch.tensor([1.0] * 4 + [0.0] * 4)  # also the paired layout: 4 chosen, then 4 rejected
    step_labels = (torch.rand(8, 3, generator=g) > 0.5).float()
    batch = LossBatch(labels, a, a.clone(), 0.05, kl_logps=b, kl_ref_logps=b.clone(), step_logits=torch.zeros(8, 3),
                      step_labels=step_labels, step_mask=torch.ones(8, 3, dtype=torch.bool))
    loss, rewards, used = LOSSES[name](batch)
    assert loss.item() == pytest.approx(closed_form_init_loss(name), abs=1e-6)
    assert rewards.shape == used.shape and not rewards.requires_grad


def test_closed_form_values():
    assert closed_form_init_loss("ce") == pytest.approx(0.6931472, abs=1e-7)
    assert closed_form_init_loss("dpo") == pytest.approx(0.6931472, abs=1e-7)
    assert closed_form_init_loss("nca") == pytest.approx(1.3862944, abs=1e-7)
    assert closed_form_init_loss("kto") == 0.5
    # 3 desirable of 4, w_D = 2, w_U = 0.5: 0.5 * (0.75 * 2 + 0.25 * 0.5) = 0.8125
    assert closed_form_init_loss("kto", 2.0, 0.5, frac_desirable=0.75) == pytest.approx(0.8125)
    with pytest.raises(ValueError, match="frac_desirable"):
        closed_form_init_loss("kto", 2.0, 0.5)
    with pytest.raises(ValueError, match="unknown objective"):
        closed_form_init_loss("ppo")


def test_kto_weighted_init_matches_closed_form():
    a = t(-3.0, -7.0, -1.0, -9.0)
    loss, _, _ = kto(a, a.clone(), t(1, 1, 1, 0), a, a.clone(), desirable_weight=2.0, undesirable_weight=0.5)
    assert loss.item() == pytest.approx(closed_form_init_loss("kto", 2.0, 0.5, frac_desirable=0.75), abs=1e-6)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="same shape"):
        ce(t(1.0, 2.0), t(1.0), t(1.0, 0.0))
    with pytest.raises(ValueError, match="labels"):
        ce(t(1.0, 2.0), t(1.0, 2.0), t(1.0))
    with pytest.raises(ValueError, match="paired batch"):  # not n chosen then n rejected
        dpo_loss(LossBatch(t(0.0, 1.0), t(1.0, 2.0), t(1.0, 2.0)))
    with pytest.raises(ValueError, match="required"):
        kto_loss(LossBatch(t(1.0), t(1.0), t(1.0)))
    with pytest.raises(ValueError, match="no labelled step"):
        step_bce_loss(LossBatch(t(1.0), step_logits=t(1.0)[None], step_labels=t(1.0)[None],
                                step_mask=torch.zeros(1, 1, dtype=torch.bool)))


def test_step_bce_hand_values():
    """Two responses, up to 3 steps; the mask leaves out response 2's third step.
    logits [[1, -1, 0], [2, 0, 5]], labels [[1, 0, 1], [0, 0.5, 1]]:
      -log sigma(1) = 0.3132617; label 0 at -1: -log sigma(1) = 0.3132617; label 1 at 0: ln 2 = 0.6931472;
      label 0 at 2: -log sigma(-2) = 2.1269280; soft 0.5 at 0: ln 2 = 0.6931472.
      mean of 5 = (0.3132617 * 2 + 0.6931472 * 2 + 2.1269280) / 5 = 0.8279492."""
    z = t(1.0, -1.0, 0.0, 2.0, 0.0, 5.0).reshape(2, 3)
    y = t(1.0, 0.0, 1.0, 0.0, 0.5, 1.0).reshape(2, 3)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss, r, lab = step_bce_loss(LossBatch(t(1.0, 0.0), step_logits=z, step_labels=y, step_mask=mask))
    assert loss.item() == pytest.approx(0.8279492, abs=1e-6)
    assert r.tolist() == [1.0, -1.0, 0.0, 2.0, 0.0] and lab.tolist() == [1.0, 0.0, 1.0, 0.0, 0.5]
