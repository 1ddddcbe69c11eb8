"""Training objectives for implicit PRMs (CE / DPO / NCA / KTO) as pure functions of summed sequence log-probs.

Every objective works on the implicit reward of a whole response (Yuan et al. 2024, "Free Process Rewards
without Process Labels", arXiv 2412.01981, Sec. 3):

    r(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x))

where both log-probs are summed over the response tokens. Inputs are tensors of shape (B,); each function
returns `(loss, rewards)`: `loss` is the batch mean (a scalar with grad), `rewards` is the detached r of every
input sequence, for logging. At policy == reference every r is 0, and `closed_form_init_loss` gives the loss there.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

DEFAULT_BETA = 0.05


def _reward(policy_logps: Tensor, ref_logps: Tensor, beta: float, name: str) -> Tensor:
    """r = beta * (policy_logps - ref_logps), checking that the two tensors line up."""
    if policy_logps.shape != ref_logps.shape:
        raise ValueError(f"{name}: policy log-probs {tuple(policy_logps.shape)} and reference log-probs "
                         f"{tuple(ref_logps.shape)} must have the same shape")
    return beta * (policy_logps - ref_logps.to(policy_logps.dtype))  # (B,)


def ce_loss(policy_logps: Tensor, ref_logps: Tensor, labels: Tensor,
            beta: float = DEFAULT_BETA) -> tuple[Tensor, Tensor]:
    """Cross-entropy on outcome labels: the implicit PRM paper's CE objective (Yuan et al. 2024,
    arXiv 2412.01981), i.e. binary cross-entropy of sigma(r) against the outcome label.

        loss = mean_i -[ l_i log sigma(r_i) + (1 - l_i) log(1 - sigma(r_i)) ],   l_i in {0, 1}

    computed stably as -[l logsigmoid(r) + (1 - l) logsigmoid(-r)], since 1 - sigma(r) = sigma(-r).
    At r = 0 it is ln 2 whatever the labels.
    """
    r = _reward(policy_logps, ref_logps, beta, "ce_loss")  # (B,)
    if labels.shape != r.shape:
        raise ValueError(f"ce_loss: labels {tuple(labels.shape)} must have the shape of the log-probs {tuple(r.shape)}")
    lab = labels.to(r.dtype)
    losses = -(lab * F.logsigmoid(r) + (1 - lab) * F.logsigmoid(-r))  # (B,)
    return losses.mean(), r.detach()


def dpo_loss(chosen_logps: Tensor, chosen_ref_logps: Tensor, rejected_logps: Tensor, rejected_ref_logps: Tensor,
             beta: float = DEFAULT_BETA) -> tuple[Tensor, Tensor]:
    """DPO (Rafailov et al. 2023, "Direct Preference Optimization", arXiv 2305.18290, Eq. 7).

        loss = mean_i -log sigma(r_w,i - r_l,i)

    with r_w the chosen and r_l the rejected response's implicit reward. ln 2 at r_w = r_l.
    Returns rewards as a (2, B) tensor: row 0 chosen, row 1 rejected.
    """
    r_w = _reward(chosen_logps, chosen_ref_logps, beta, "dpo_loss (chosen)")  # (B,)
    r_l = _reward(rejected_logps, rejected_ref_logps, beta, "dpo_loss (rejected)")  # (B,)
    losses = -F.logsigmoid(r_w - r_l)  # (B,)
    return losses.mean(), torch.stack([r_w, r_l]).detach()  # (2, B)


def nca_loss(chosen_logps: Tensor, chosen_ref_logps: Tensor, rejected_logps: Tensor, rejected_ref_logps: Tensor,
             beta: float = DEFAULT_BETA) -> tuple[Tensor, Tensor]:
    """NCA, pairwise form (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards", arXiv 2402.05369).

    NCA's loss for K responses with target weights p_i (sum 1) is
        -sum_i [ p_i log sigma(r_i) + (1/K) log sigma(-r_i) ].
    For a preference pair, K = 2 and the hard label puts p_w = 1, p_l = 0, giving

        loss = mean_i -log sigma(r_w,i) - 0.5 log sigma(-r_w,i) - 0.5 log sigma(-r_l,i)

    which is TRL's `loss_type="nca_pair"` and the form the implicit PRM reference code trains with.
    Unlike DPO it scores each response on its own, so it pushes r_w up in absolute terms rather than only
    r_w - r_l. At r = 0: ln 2 + 0.5 ln 2 + 0.5 ln 2 = 2 ln 2.
    Returns rewards as a (2, B) tensor: row 0 chosen, row 1 rejected.
    """
    r_w = _reward(chosen_logps, chosen_ref_logps, beta, "nca_loss (chosen)")  # (B,)
    r_l = _reward(rejected_logps, rejected_ref_logps, beta, "nca_loss (rejected)")  # (B,)
    losses = -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)  # (B,)
    return losses.mean(), torch.stack([r_w, r_l]).detach()  # (2, B)


def kto_loss(policy_logps: Tensor, ref_logps: Tensor, labels: Tensor, kl_policy_logps: Tensor, kl_ref_logps: Tensor,
             beta: float = DEFAULT_BETA, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> tuple[Tensor, Tensor]:
    """KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", arXiv 2402.01306;
    their L_KTO = E[w(y) (1 - v(x, y))]).

        z0   = max(0, mean_j beta * (kl_policy_logps_j - kl_ref_logps_j))        (detached: no gradient)
        v_i  = sigma(r_i - z0)  if l_i = 1 (desirable),   sigma(z0 - r_i)  if l_i = 0
        loss = mean_i w_i (1 - v_i),   w_i = desirable_weight or undesirable_weight

    r already contains beta and z0 is beta * KL, so r - z0 is the paper's beta (r_theta - z_0). The kl_* inputs are
    summed log-probs of mismatched (prompt, response) pairs from the same batch: the paper's biased estimate of
    KL(pi_theta || pi_ref), used only as a reference point. At policy == reference (r = 0, z0 = 0) each example
    contributes 0.5 * w_i, so the loss is mean_i 0.5 w_i (0.5 with the default weights).
    """
    r = _reward(policy_logps, ref_logps, beta, "kto_loss")  # (B,)
    if labels.shape != r.shape:
        raise ValueError(f"kto_loss: labels {tuple(labels.shape)} must have the shape of the log-probs {tuple(r.shape)}")
    kl = _reward(kl_policy_logps, kl_ref_logps, beta, "kto_loss (KL pairs)")  # (M,)
    z0 = kl.mean().clamp(min=0).detach()  # ()
    desirable = labels.to(torch.bool)  # (B,)
    v = torch.where(desirable, torch.sigmoid(r - z0), torch.sigmoid(z0 - r))  # (B,)
    w = torch.where(desirable, r.new_tensor(desirable_weight), r.new_tensor(undesirable_weight))  # (B,)
    losses = w * (1 - v)  # (B,)
    return losses.mean(), r.detach()


LOSSES = {"ce": ce_loss, "dpo": dpo_loss, "nca": nca_loss, "kto": kto_loss}
PAIRED = {"dpo", "nca"}


def closed_form_init_loss(objective: str, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
                          frac_desirable: float | None = None) -> float:
    """The loss at policy == reference (every r = 0), to check a fresh run starts where it should.

    ce: ln 2.  dpo: ln 2.  nca: 2 ln 2.
    kto: mean_i 0.5 w_i = 0.5 (f w_D + (1 - f) w_U) with f the fraction of desirable examples; f may be left out
    only when w_D == w_U (then it is 0.5 w).
    """
    if objective in ("ce", "dpo"):
        return math.log(2)
    if objective == "nca":
        return 2 * math.log(2)
    if objective == "kto":
        if frac_desirable is None:
            if desirable_weight != undesirable_weight:
                raise ValueError("closed_form_init_loss('kto'): frac_desirable is needed when "
                                 f"desirable_weight ({desirable_weight}) != undesirable_weight ({undesirable_weight})")
            return 0.5 * desirable_weight
        if not 0.0 <= frac_desirable <= 1.0:
            raise ValueError(f"closed_form_init_loss('kto'): frac_desirable must be in [0, 1], got {frac_desirable}")
        return 0.5 * (frac_desirable * desirable_weight + (1 - frac_desirable) * undesirable_weight)
    raise ValueError(f"unknown objective {objective!r}; expected one of {sorted(LOSSES)}")
