"""Hand-checked numbers for the CE / DPO / NCA / KTO objectives in implicit_prm.losses."""
import math

import pytest
import torch

from implicit_prm.losses import LOSSES, PAIRED, ce_loss, closed_form_init_loss, dpo_loss, kto_loss, nca_loss

# Reference values used below (sigma = logistic function):
#   -log sigma(1)  = log(1 + e^-1) = 0.3132617
#   -log sigma(-1) = log(1 + e)    = 1.3132617
#   sigma(0.5) = 0.6224593,  sigma(1) = 0.7310586,  sigma(1.5) = 0.8175745
NLS1 = math.log1p(math.exp(-1.0))   # 0.3132617
NLSM1 = math.log1p(math.exp(1.0))   # 1.3132617


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_reference_constants():
    assert NLS1 == pytest.approx(0.3132617, abs=1e-7)
    assert NLSM1 == pytest.approx(1.3132617, abs=1e-7)


def test_ce_hand_values():
    """logratio 2, beta 0.5 -> r = 1. Label 1: -log sigma(1) = 0.31326; label 0: -log(1 - sigma(1)) = 1.31326.
    Batch of both: mean = 0.81326."""
    loss, r = ce_loss(t(2.0), t(0.0), t(1.0), beta=0.5)
    assert loss.item() == pytest.approx(0.3132617, abs=1e-6)
    assert r.tolist() == [1.0]
    loss, _ = ce_loss(t(2.0), t(0.0), t(0.0), beta=0.5)
    assert loss.item() == pytest.approx(1.3132617, abs=1e-6)
    loss, r = ce_loss(t(5.0, 3.0), t(3.0, 1.0), torch.tensor([True, False]), beta=0.5)
    assert loss.item() == pytest.approx(0.8132617, abs=1e-6)
    assert r.tolist() == [1.0, 1.0] and not r.requires_grad


def test_ce_gradient_signs():
    """d loss / d policy_logp = -beta (l - sigma(r)) / B: negative for label 1 (descent raises the log-prob),
    positive for label 0. At r = 0, beta 0.5, B = 2: -0.5 * 0.5 / 2 = -0.125 and +0.125."""
    pol = t(0.0, 0.0).requires_grad_()
    loss, _ = ce_loss(pol, t(0.0, 0.0), t(1.0, 0.0), beta=0.5)
    loss.backward()
    assert pol.grad.tolist() == pytest.approx([-0.125, 0.125], abs=1e-9)


def test_ce_is_stable_for_large_rewards():
    loss, _ = ce_loss(t(1e4), t(0.0), t(0.0), beta=1.0)  # -log sigma(-1e4) = 1e4, no inf
    assert loss.item() == pytest.approx(1e4)


def test_dpo_hand_values():
    """r_w = 0.5 * (3 - 1) = 1, r_l = 0.5 * (1 - 1) = 0: -log sigma(1) = 0.31326.
    Swapped (r_w - r_l = -1): -log sigma(-1) = 1.31326. Batch mean of both: 0.81326."""
    loss, r = dpo_loss(t(3.0), t(1.0), t(1.0), t(1.0), beta=0.5)
    assert loss.item() == pytest.approx(NLS1, abs=1e-6)
    assert r.tolist() == [[1.0], [0.0]]
    loss, _ = dpo_loss(t(1.0), t(1.0), t(3.0), t(1.0), beta=0.5)
    assert loss.item() == pytest.approx(NLSM1, abs=1e-6)
    loss, r = dpo_loss(t(3.0, 1.0), t(1.0, 1.0), t(1.0, 3.0), t(1.0, 1.0), beta=0.5)
    assert loss.item() == pytest.approx(0.8132617, abs=1e-6)
    assert r.shape == (2, 2)


def test_dpo_gradient_signs():
    """Descent raises the chosen log-prob and lowers the rejected one."""
    cw, cl = t(0.0).requires_grad_(), t(0.0).requires_grad_()
    loss, _ = dpo_loss(cw, t(0.0), cl, t(0.0), beta=0.1)
    loss.backward()
    assert cw.grad.item() < 0 < cl.grad.item()


def test_nca_hand_values():
    """r_w = 1, r_l = -1:  -log sigma(1) - 0.5 log sigma(-1) - 0.5 log sigma(1)
       = 0.3132617 + 0.5 * 1.3132617 + 0.5 * 0.3132617 = 1.1265234."""
    loss, r = nca_loss(t(2.0), t(0.0), t(-2.0), t(0.0), beta=0.5)
    assert loss.item() == pytest.approx(1.1265234, abs=1e-6)
    assert r.tolist() == [[1.0], [-1.0]]


def test_nca_differs_from_dpo_on_shift():
    """DPO only sees r_w - r_l; NCA also sees absolute rewards: shifting both by +1 leaves DPO unchanged
    and changes NCA (r_w = 2, r_l = 0: log(1+e^-2) + 0.5 log(1+e^2) + 0.5 ln 2
    = 0.126928 + 1.063464 + 0.346574 = 1.536966, vs 1.126523 before the shift)."""
    d0, _ = dpo_loss(t(2.0), t(0.0), t(-2.0), t(0.0), beta=0.5)
    d1, _ = dpo_loss(t(4.0), t(0.0), t(0.0), t(0.0), beta=0.5)
    assert d0.item() == pytest.approx(d1.item())
    n1, _ = nca_loss(t(4.0), t(0.0), t(0.0), t(0.0), beta=0.5)
    expected = math.log1p(math.exp(-2)) + 0.5 * math.log1p(math.exp(2)) + 0.5 * math.log(2)
    assert n1.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.536966, abs=1e-6)
    n0, _ = nca_loss(t(2.0), t(0.0), t(-2.0), t(0.0), beta=0.5)
    assert n0.item() == pytest.approx(1.1265234, abs=1e-6)


def test_nca_gradient_signs():
    """Chosen log-prob pushed up, rejected pushed down (d/dr_l of -0.5 log sigma(-r_l) = 0.5 sigma(r_l) > 0)."""
    cw, cl = t(0.0).requires_grad_(), t(0.0).requires_grad_()
    loss, _ = nca_loss(cw, t(0.0), cl, t(0.0), beta=1.0)
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
    loss, r = kto_loss(*args, beta=0.5)
    assert loss.item() == pytest.approx(0.2799831, abs=1e-6)
    assert r.tolist() == [1.0, -1.0]
    loss, _ = kto_loss(*args, beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)
    assert loss.item() == pytest.approx(0.4231471, abs=1e-6)


def test_kto_negative_kl_is_clamped():
    """KL pairs: 0.5 * ([-4, 0] - 0) = [-2, 0], mean -1 -> clamped to z0 = 0.
    r = [1, -1]: 1 - sigma(1) = 0.2689414 for both, mean 0.2689414.
    (Without the clamp, z0 = -1 would give (1 - sigma(2) + 1 - sigma(0)) / 2 = 0.3096.)"""
    loss, _ = kto_loss(t(2.0, -2.0), t(0.0, 0.0), t(1.0, 0.0), t(-4.0, 0.0), t(0.0, 0.0), beta=0.5)
    assert loss.item() == pytest.approx(0.2689414, abs=1e-6)


def test_kto_reference_point_carries_no_gradient():
    pol = t(2.0, -2.0).requires_grad_()
    kl_pol = t(4.0, -2.0).requires_grad_()
    loss, _ = kto_loss(pol, t(0.0, 0.0), t(1.0, 0.0), kl_pol, t(0.0, 0.0), beta=0.5)
    g_pol, g_kl = torch.autograd.grad(loss, [pol, kl_pol], allow_unused=True)
    assert g_kl is None or torch.all(g_kl == 0)
    # desirable: -(beta/B) sigma'(0.5) < 0 (push up); undesirable: +(beta/B) sigma'(1.5) > 0 (push down)
    assert g_pol[0].item() < 0 < g_pol[1].item()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_init_loss_matches_closed_form(name):
    """At policy == reference every r is 0: ce ln 2, dpo ln 2, nca 2 ln 2, kto 0.5."""
    g = torch.Generator().manual_seed(0)
    a, b = -50 * torch.rand(8, generator=g), -50 * torch.rand(8, generator=g)
    labels = (torch.rand(8, generator=g) > 0.5).float()
    fn = LOSSES[name]
    if name in PAIRED:
        loss, _ = fn(a, a.clone(), b, b.clone())
    elif name == "kto":
        loss, _ = fn(a, a.clone(), labels, b, b.clone())
    else:
        loss, _ = fn(a, a.clone(), labels)
    assert loss.item() == pytest.approx(closed_form_init_loss(name), abs=1e-6)


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
    loss, _ = kto_loss(a, a.clone(), t(1, 1, 1, 0), a, a.clone(), desirable_weight=2.0, undesirable_weight=0.5)
    assert loss.item() == pytest.approx(closed_form_init_loss("kto", 2.0, 0.5, frac_desirable=0.75), abs=1e-6)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="same shape"):
        ce_loss(t(1.0, 2.0), t(1.0), t(1.0, 0.0))
    with pytest.raises(ValueError, match="labels"):
        ce_loss(t(1.0, 2.0), t(1.0, 2.0), t(1.0))
