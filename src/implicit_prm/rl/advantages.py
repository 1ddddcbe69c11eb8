"""PRIME's maths (Cui et al. 2025, *Process Reinforcement through Implicit Rewards*, arXiv 2502.01456): token
rewards from the implicit PRM, their batch normalisation, leave-one-out (RLOO) baselines for the process and the
outcome rewards, returns, whitening, the accuracy filter, and the PRM's pairwise accuracy. Pure functions of tensors.

Shapes: a batch of B responses, laid out as groups of K consecutive samples of one prompt (the layout TRL's
GRPOTrainer and the reference code both use), over T response positions; `mask` (B, T) is 1 on response tokens
(left-aligned: the response starts at position 0, padding follows). Rows of filtered groups are passed as `kept`
(B,) bool: every batch statistic (the normalisation's maximum, the whitening's mean and variance) runs over kept
rows only, and a filtered row's advantage is 0.

"The reference code" is PRIME-RL/PRIME, `training/verl/workers/actor/dp_prime.py` (token rewards, batch norm) and
`training/verl/trainer/ppo/core_algos.py` (`compute_rloo_returns`, `compute_dpo_accuracy`, `masked_whiten` from
`verl/utils/torch_functional.py`), with `training/examples/run_prime_main.sh` for its settings.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..losses import LOSSES, LossBatch

EPS_NORM = 1e-6  # the reference code's batch_norm epsilon
EPS_WHITEN = 1e-8  # verl's masked_whiten epsilon
BASELINES = ("code", "eq5")


def token_rewards(logps: Tensor, ref_logps: Tensor, mask: Tensor, granularity: str = "token") -> Tensor:
    """The implicit PRM's process rewards, (B, T), without beta (the reference code's `compute_implicit_reward`):

        token:  r_t = log pi_phi(y_t | y_<t) - log pi_ref(y_t | y_<t)   on response tokens, 0 elsewhere
        whole:  r_t = sum_s (log pi_phi(y_s) - log pi_ref(y_s))          at the last response token, 0 elsewhere

    (beta enters the PRM's own loss, `prm_loss`, not the rewards the policy sees.)"""
    q = (logps - ref_logps) * mask
    if granularity == "token":
        return q
    if granularity != "whole":
        raise ValueError(f"granularity {granularity!r}: expected 'token' or 'whole'")
    return at_last_token(q.sum(1), mask)


def at_last_token(values: Tensor, mask: Tensor) -> Tensor:
    """(B,) values placed at each row's last response token of a (B, T) zero tensor."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    last = (mask.sum(1).long() - 1).clamp(min=0)
    out[torch.arange(mask.shape[0], device=mask.device), last] = values * (mask.sum(1) > 0)
    return out


def reverse_cumsum(x: Tensor, gamma: float = 1.0) -> Tensor:
    """Returns G_t = sum_{s >= t} gamma^(s - t) x_s along the last dimension (the reference code's discounted
    reward loop; gamma 1 in PRIME)."""
    if gamma == 1.0:
        return x.flip(-1).cumsum(-1).flip(-1)
    out = torch.zeros_like(x)
    running = torch.zeros_like(x[..., 0])
    for t in range(x.shape[-1] - 1, -1, -1):
        running = x[..., t] + gamma * running
        out[..., t] = running
    return out


def batch_normalize(rewards: Tensor, kept: Tensor | None = None) -> Tensor:
    """PRIME's `prime_norm: batch_norm` (dp_prime.py): divide the process rewards by the largest absolute reverse
    cumulative sum over the batch (kept rows only), plus 1e-6, so no return exceeds 1 in magnitude:

        r_t <- r_t / (max_{i, t} |sum_{s >= t} r_{i, s}| + 1e-6)"""
    rc = reverse_cumsum(rewards).abs()
    if kept is not None:
        rc = rc[kept]
    top = rc.max() if rc.numel() else rewards.new_zeros(())
    return rewards / (top + EPS_NORM)


def _group_means(rewards: Tensor, mask: Tensor, k: int) -> Tensor:
    """(B / K, K): each response's mean reward over its own response tokens."""
    means = (rewards * mask).sum(1) / mask.sum(1).clamp(min=1)
    return means.view(-1, k)


def rloo_process(rewards: Tensor, mask: Tensor, k: int, baseline: str = "code") -> Tensor:
    """Leave-one-out baselines for the per-token process rewards, (B, T), 0 off the mask. With m_j the mean token
    reward of sample j of the group (its sum over its own length):

        code (compute_rloo_returns, the default):  r'_{i,t} = r_{i,t} K / (K - 1) - sum_j m_j / (K - 1)
        eq5  (the paper's Eq. 5):                  r'_{i,t} = r_{i,t} - sum_{j != i} m_j / (K - 1)

    The two give the same return at t = 0 (sum_t r'_{i,t}: both R_i - |y_i| sum_{j != i} m_j / (K - 1)) and differ
    later: the code's spreads sample i's own mean over its tokens (r'_{i,t} - r^eq5_{i,t} = (r_{i,t} - m_i) / (K-1))."""
    if k < 2:
        raise ValueError(f"a leave-one-out baseline needs K >= 2 samples per prompt, got {k}")
    means = _group_means(rewards, mask, k)  # (G, K)
    r = rewards.view(-1, k, rewards.shape[1])
    total = means.sum(1, keepdim=True)  # (G, 1)
    if baseline == "code":
        out = r * k / (k - 1) - (total / (k - 1))[..., None]
    elif baseline == "eq5":
        out = r - ((total - means) / (k - 1))[..., None]
    else:
        raise ValueError(f"baseline {baseline!r}: expected one of {BASELINES}")
    return out.reshape(rewards.shape) * mask


def rloo_outcome(outcome: Tensor, mask: Tensor, k: int) -> Tensor:
    """The outcome reward's leave-one-out advantage at each row's last response token, (B, T):

        A_i = o_i - sum_{j != i} o_j / (K - 1)     (compute_rloo_returns on `gt_scores`; the paper's Eq. 5)"""
    if k < 2:
        raise ValueError(f"a leave-one-out baseline needs K >= 2 samples per prompt, got {k}")
    o = outcome.view(-1, k)
    loo = o - (o.sum(1, keepdim=True) - o) / (k - 1)
    return at_last_token(loo.reshape(-1), mask)


def masked_whiten(values: Tensor, mask: Tensor, eps: float = EPS_WHITEN) -> Tensor:
    """(values - mean) / sqrt(var + eps) over the masked entries, with the unbiased variance (verl's
    masked_whiten: var * n / (n - 1)); entries off the mask come out 0."""
    m = mask.to(values.dtype)
    n = m.sum()
    if n < 2:
        raise ValueError(f"whitening needs at least 2 masked values, got {int(n)}")
    mean = (values * m).sum() / n
    var = (((values - mean) ** 2) * m).sum() / n * n / (n - 1)
    return (values - mean) * torch.rsqrt(var + eps) * m


def accuracy_filter(correct: Tensor, k: int, low: float = 0.2, high: float = 0.8) -> Tensor:
    """(B,) bool: the rows of groups whose mean accuracy over their K samples lies in [low, high] (the reference
    code's `filter` with `accuracy_lower_bound` 0.2 and `accuracy_upper_bound` 0.8)."""
    acc = correct.float().view(-1, k).mean(1)
    keep = (acc >= low - 1e-9) & (acc <= high + 1e-9)
    return keep.repeat_interleave(k)


def prime_advantages(process: Tensor, outcome: Tensor, mask: Tensor, k: int, kept: Tensor | None = None,
                     baseline: str = "code", gamma: float = 1.0, normalize: bool = True,
                     process_coef: float = 1.0) -> Tensor:
    """PRIME's (B, T) advantages: process rewards batch-normalised (over kept rows), each reward source given its
    leave-one-out baseline, turned into returns (reverse cumulative sum, gamma), summed, and whitened over the
    kept rows' response tokens; filtered rows get 0 (compute_rloo_returns, then masked_whiten).

    `process_coef` weights the process returns (1 in the reference code: its `rm_coef` 5 scales only the logged
    combined reward, not the advantages). With process rewards all 0 this is the outcome-only RLOO advantage,
    whitened over the same tokens."""
    kept = torch.ones(mask.shape[0], dtype=torch.bool, device=mask.device) if kept is None else kept.bool()
    proc = batch_normalize(process * mask, kept) if normalize else process * mask
    returns = process_coef * reverse_cumsum(rloo_process(proc, mask, k, baseline), gamma)
    returns = returns + reverse_cumsum(rloo_outcome(outcome.to(process.dtype), mask, k), gamma)
    keep = mask * kept[:, None].to(mask.dtype)
    if keep.sum() < 2:
        return torch.zeros_like(returns)
    return masked_whiten(returns, keep)


def prm_loss(logps: Tensor, ref_logps: Tensor, correct: Tensor, beta: float = 0.05) -> Tensor:
    """The PRM's online update loss, the CE objective of `losses.LOSSES["ce"]` on each response's summed log-ratio:
    BCE(sigmoid(beta * sum_t q_t), correct) (the reference code's `compute_ce_dpo_loss_rm`, beta_train 0.05)."""
    return LOSSES["ce"].fn(LossBatch(correct.float(), logps, ref_logps, beta)).loss


def pairwise_accuracy(scores: Tensor, correct: Tensor, k: int) -> Tensor:
    """The PRM's accuracy at ordering the samples of each prompt (the reference code's `compute_dpo_accuracy`, the
    paper's Figure 5): over pairs (a, b) of a group with different outcomes, the share where the higher summed
    reward belongs to the correct one; a group with no such pair counts 0.5. The mean over groups."""
    s, c = scores.view(-1, k), correct.float().view(-1, k)
    out = []
    for sg, cg in zip(s, c):
        i, j = torch.triu_indices(k, k, 1)
        dc, ds = cg[i] - cg[j], sg[i] - sg[j]
        w = dc.abs()
        out.append(torch.tensor(0.5) if w.sum() == 0 else (((ds > 0) == (dc > 0)).float() * w).sum() / w.sum())
    return torch.stack(out).mean()
