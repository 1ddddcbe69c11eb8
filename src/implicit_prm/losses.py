"""Training objectives as pure tensor functions with one interface: `LOSSES[name](batch, **options) -> LossOutput`.

The implicit objectives (CE / DPO / NCA / KTO) work on the implicit reward of a whole response (Yuan et al. 2024,
"Free Process Rewards without Process Labels", arXiv 2412.01981, Sec. 3):

    r(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x))

with both log-probs summed over the response tokens. The step objective (`step_bce`) works on one logit per
labelled step and has no reference and no beta: it trains the baselines that learn from step labels.

Every objective takes a `LossBatch` and its own options and returns `LossOutput(loss, rewards, labels)`: `loss`
is the batch mean (a scalar with grad); `rewards` and `labels` are detached and aligned one to one, for logging
(per response for the implicit objectives, per labelled step for `step_bce`). At policy == reference every
implicit r is 0, and `closed_form_init_loss` gives the loss there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

DEFAULT_BETA = 0.05


@dataclass
class LossBatch:
    """One micro-batch as the objectives see it. Rows are responses.

    Layout: a paired objective's batch holds its n chosen rows first and then their n rejected rows in the same
    order, so row i and row n + i form a pair and `labels` is n ones followed by n zeros.

    Implicit objectives read `logps` and `ref_logps` (B,), the summed response log-probs under the policy and the
    reference, and `beta`; KTO also reads `kl_logps` and `kl_ref_logps` (M,), the same sums for mismatched
    (prompt, response) pairs. Step objectives read `step_logits` (B, S), `step_labels` (B, S) in [0, 1] and
    `step_mask` (B, S), which marks the labelled steps of each row.
    """

    labels: Tensor  # (B,) outcome label of each row: 1 correct (or chosen), 0 incorrect (or rejected)
    logps: Optional[Tensor] = None  # (B,)
    ref_logps: Optional[Tensor] = None  # (B,)
    beta: float = DEFAULT_BETA
    kl_logps: Optional[Tensor] = None  # (M,)
    kl_ref_logps: Optional[Tensor] = None  # (M,)
    step_logits: Optional[Tensor] = None  # (B, S)
    step_labels: Optional[Tensor] = None  # (B, S)
    step_mask: Optional[Tensor] = None  # (B, S) bool

    def rewards(self) -> Tensor:
        """r = beta * (logps - ref_logps), (B,), checking that the log-probs and labels line up."""
        return _reward(self.logps, self.ref_logps, self.beta, self.labels, "logps")

    def kl_rewards(self) -> Tensor:
        """beta * (kl_logps - kl_ref_logps), (M,)."""
        return _reward(self.kl_logps, self.kl_ref_logps, self.beta, None, "kl_logps")

    def chosen_rejected(self, name: str) -> tuple[Tensor, Tensor]:
        """(r_chosen (n,), r_rejected (n,)) from the paired layout; refuses a batch that is not laid out as pairs."""
        r = self.rewards()  # (2n,)
        n = r.shape[0] // 2
        want = torch.cat([torch.ones(n), torch.zeros(n)]).to(self.labels.device)
        if r.shape[0] % 2 or not torch.equal(self.labels.to(want.dtype), want):
            raise ValueError(f"{name}: a paired batch holds n chosen rows (label 1) then n rejected rows (label 0); "
                             f"got labels {self.labels.tolist()}")
        return r[:n], r[n:]


def _reward(logps: Tensor | None, ref_logps: Tensor | None, beta: float, labels: Tensor | None, name: str) -> Tensor:
    if logps is None or ref_logps is None:
        raise ValueError(f"LossBatch.{name} and its reference log-probs are required by this objective")
    if logps.shape != ref_logps.shape or logps.dim() != 1:
        raise ValueError(f"LossBatch.{name} {tuple(logps.shape)} and its reference log-probs "
                         f"{tuple(ref_logps.shape)} must be 1-D and of the same shape")
    if labels is not None and labels.shape != logps.shape:
        raise ValueError(f"LossBatch.labels {tuple(labels.shape)} must have the shape of {name} {tuple(logps.shape)}")
    return beta * (logps - ref_logps.to(logps.dtype))  # (B,)


class LossOutput(NamedTuple):
    loss: Tensor  # () batch mean, with grad
    rewards: Tensor  # (K,) detached: per response, or per labelled step
    labels: Tensor  # (K,) the labels the rewards are judged against


def ce_loss(batch: LossBatch) -> LossOutput:
    """Cross-entropy on outcome labels: the implicit PRM paper's CE objective (Yuan et al. 2024, arXiv 2412.01981),
    the binary cross-entropy of sigma(r) against the outcome label.

        loss = mean_i -[ l_i log sigma(r_i) + (1 - l_i) log(1 - sigma(r_i)) ],   l_i in {0, 1}

    computed stably as -[l logsigmoid(r) + (1 - l) logsigmoid(-r)], since 1 - sigma(r) = sigma(-r).
    At r = 0 it is ln 2 whatever the labels.

    Relation to BCO (Jung et al. 2024, "Binary Classifier Optimization", arXiv 2404.04656): BCO is the same
    classifier loss, averaged the same way over all rows, with a reward shift delta: -log sigma(r - delta) for
    desirable and -log sigma(-(r - delta)) for undesirable responses. The paper introduces the shift to tighten the
    bound that this binary cross-entropy places on the DPO loss. delta is not a parameter or a per-batch quantity
    but a running statistic, with no gradient: TRL's BCOTrainer (dropped from TRL before 1.16) kept it as the mean
    of every implicit reward seen so far in training (its RunningMoments, updated with the current batch's rewards,
    gathered across processes, just before the loss). BCO can also weight undesirable examples by a prompt density
    ratio (its "underlying distribution matching"). CE is BCO with delta = 0 and no such weights: the implicit
    reward itself is the classifier's logit, so sigma(r) = 1/2 keeps its meaning (policy == reference), a step
    reward's sign is interpretable, and the loss depends on the batch alone, not on the training history.
    """
    r = batch.rewards()  # (B,)
    lab = batch.labels.to(r.dtype)
    losses = -(lab * F.logsigmoid(r) + (1 - lab) * F.logsigmoid(-r))  # (B,)
    return LossOutput(losses.mean(), r.detach(), batch.labels)


def dpo_loss(batch: LossBatch) -> LossOutput:
    """DPO (Rafailov et al. 2023, "Direct Preference Optimization", arXiv 2305.18290, Eq. 7).

        loss = mean_i -log sigma(r_w,i - r_l,i)

    with r_w the chosen and r_l the rejected response's implicit reward (paired layout). ln 2 at r_w = r_l.
    TRL's `DPOTrainer` with `loss_type="sigmoid"` and its defaults (no label smoothing, reverse-KL f-divergence, no
    WPO weighting, no length desensitisation); its rewards are TRL's rewards/chosen and rewards/rejected.
    tests/test_losses_trl.py checks loss, rewards and gradients against TRL 1.16.0's own `_compute_loss`.
    """
    r_w, r_l = batch.chosen_rejected("dpo_loss")  # (n,), (n,)
    losses = -F.logsigmoid(r_w - r_l)  # (n,)
    return LossOutput(losses.mean(), torch.cat([r_w, r_l]).detach(), batch.labels)


def nca_loss(batch: LossBatch) -> LossOutput:
    """NCA, pairwise form (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards", arXiv 2402.05369).

    NCA's loss for K responses with target weights p_i (sum 1) is
        -sum_i [ p_i log sigma(r_i) + (1/K) log sigma(-r_i) ].
    For a preference pair, K = 2 and the hard label puts p_w = 1, p_l = 0, giving

        loss = mean_i -log sigma(r_w,i) - 0.5 log sigma(-r_w,i) - 0.5 log sigma(-r_l,i)

    which is TRL's `loss_type="nca_pair"` (checked against TRL 1.16.0's `DPOTrainer._compute_loss` in
    tests/test_losses_trl.py) and the form the implicit PRM reference code trains with.
    Unlike DPO it scores each response on its own, so it pushes r_w up in absolute terms rather than only
    r_w - r_l. At r = 0: ln 2 + 0.5 ln 2 + 0.5 ln 2 = 2 ln 2.
    """
    r_w, r_l = batch.chosen_rejected("nca_loss")  # (n,), (n,)
    losses = -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)  # (n,)
    return LossOutput(losses.mean(), torch.cat([r_w, r_l]).detach(), batch.labels)


def kto_loss(batch: LossBatch, desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> LossOutput:
    """KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", arXiv 2402.01306;
    their L_KTO = E[w(y) (1 - v(x, y))]).

        z0   = max(0, mean_j beta * (kl_logps_j - kl_ref_logps_j))        (detached: no gradient)
        v_i  = sigma(r_i - z0)  if l_i = 1 (desirable),   sigma(z0 - r_i)  if l_i = 0
        loss = mean_i w_i (1 - v_i),   w_i = desirable_weight or undesirable_weight

    r already contains beta and z0 is beta * KL, so r - z0 is the paper's beta (r_theta - z_0). The kl_* inputs are
    summed log-probs of mismatched (prompt, response) pairs from the same batch: the paper's biased estimate of
    KL(pi_theta || pi_ref), used only as a reference point. At policy == reference (r = 0, z0 = 0) each example
    contributes 0.5 * w_i, so the loss is mean_i 0.5 w_i (0.5 with the default weights).

    Against TRL's `KTOTrainer` (loss_type "kto"; tests/test_losses_trl.py runs TRL 1.16.0's `_compute_loss`):
    - the same on one process: TRL clamps the mean KL at 0 in log-prob units and multiplies by beta inside the
      sigmoid, sigma(beta (logratio - KL)), which is our sigma(r - z0) for any beta > 0; it logs `kl` before
      beta (our z0 = beta * kl). Its reference point has no gradient either (policy KL log-probs under no_grad,
      then detached). It normalises like us: the mean over all B rows of the weighted losses of both classes, not
      a mean per class and not divided by the sum of the weights.
    - deliberately different with several processes: TRL gathers each process's batch-mean KL, averages them and
      then clamps, z0 = beta * max(0, mean_p KL_p); ours is the clamped mean over this micro-batch's pairs alone.
      This keeps the objective a pure function of its micro-batch, with no collective inside the loss, so a
      micro-batch gets the same loss whether it runs alone or beside other processes. The price is a noisier
      reference point (from B pairs, not B times the number of processes) whose average over the processes is
      never below TRL's, since the clamp acts before the averaging. With a local mean KL of -3 nats, another
      process at +9 and beta = 0.1, TRL's z0 is 0.3 and ours 0: on the test's batch the losses then differ by
      0.042, as computed by hand.
    - the pairs come from the caller: our training loop pairs (x_i, y_{i+1}) within each micro-batch as it is built;
      TRL pairs (x_i, y_{i-1}), fixed when the dataset is prepared, within consecutive chunks of the per-device
      batch size (so it requires sequential sampling). Both are mismatched pairs of the batch's own responses.
    """
    r = batch.rewards()  # (B,)
    z0 = batch.kl_rewards().mean().clamp(min=0).detach()  # ()
    desirable = batch.labels.to(torch.bool)  # (B,)
    v = torch.where(desirable, torch.sigmoid(r - z0), torch.sigmoid(z0 - r))  # (B,)
    w = torch.where(desirable, r.new_tensor(desirable_weight), r.new_tensor(undesirable_weight))  # (B,)
    losses = w * (1 - v)  # (B,)
    return LossOutput(losses.mean(), r.detach(), batch.labels)


def step_bce_loss(batch: LossBatch) -> LossOutput:
    """Binary cross-entropy of each labelled step's logit against its step label (hard 0/1 or soft in [0, 1]).

        loss = mean over labelled steps (b, k) of -[ y_bk log sigma(z_bk) + (1 - y_bk) log(1 - sigma(z_bk)) ]

    z is one logit per step: for a PRM that predicts a `+`/`-` token at a tag after each step (Math-Shepherd,
    Wang et al. 2024, arXiv 2312.08935), z = logit(+) - logit(-), so that this is the cross-entropy of the
    two-way softmax; for a value-head verifier (AutoPSV, Lu et al. 2024, arXiv 2405.16265), z is the head's output
    at the step boundary. Hard labels give Math-Shepherd's hard estimation, soft labels its soft estimation.
    At z = 0 it is ln 2 whatever the labels. Rewards returned are the logits of the labelled steps.
    """
    z, y, mask = batch.step_logits, batch.step_labels, batch.step_mask
    if z is None or y is None or mask is None:
        raise ValueError("step_bce_loss needs LossBatch.step_logits, step_labels and step_mask")
    if not (z.shape == y.shape == mask.shape):
        raise ValueError(f"step_bce_loss: step_logits {tuple(z.shape)}, step_labels {tuple(y.shape)} and "
                         f"step_mask {tuple(mask.shape)} must have the same shape")
    zm, ym = z[mask.bool()], y[mask.bool()].to(z.dtype)  # (K,), (K,)
    if zm.numel() == 0:
        raise ValueError("step_bce_loss: the batch has no labelled step (step_mask is all False)")
    losses = F.binary_cross_entropy_with_logits(zm, ym, reduction="none")  # (K,)
    return LossOutput(losses.mean(), zm.detach(), ym)


@dataclass(frozen=True)
class Objective:
    """A loss and what its batches need, so that the training loop builds them without a branch per objective."""

    fn: Callable[..., LossOutput]
    paired: bool = False  # examples are (chosen, rejected) pairs of one prompt, in LossBatch's paired layout
    kl_pairs: bool = False  # needs log-probs of mismatched (prompt, response) pairs (kl_logps, kl_ref_logps)
    step_labels: Optional[str] = None  # step objectives: "steps" (each sample's step labels) or "outcome" (its
    # outcome label at every step boundary, the prompt's end included: an outcome verifier)

    def __call__(self, batch: LossBatch, **options) -> LossOutput:
        return self.fn(batch, **options)


LOSSES: dict[str, Objective] = {
    "ce": Objective(ce_loss),
    "dpo": Objective(dpo_loss, paired=True),
    "nca": Objective(nca_loss, paired=True),
    "kto": Objective(kto_loss, kl_pairs=True),
    "step_bce": Objective(step_bce_loss, step_labels="steps"),
    "orm": Objective(step_bce_loss, step_labels="outcome"),
}
IMPLICIT = ("ce", "dpo", "nca", "kto")  # the objectives on the implicit reward
STEP = ("step_bce", "orm")  # the objectives of the step-tag baselines (steps/tags.py, models/heads.py)


def closed_form_init_loss(objective: str, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
                          frac_desirable: float | None = None) -> float:
    """The loss at policy == reference (every r = 0, or every step logit 0), to check a run starts where it should.

    ce, dpo, step_bce, orm: ln 2.  nca: 2 ln 2.
    kto: mean_i 0.5 w_i = 0.5 (f w_D + (1 - f) w_U) with f the fraction of desirable examples; f may be left out
    only when w_D == w_U (then it is 0.5 w).
    """
    if objective in ("ce", "dpo", "step_bce", "orm"):
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
