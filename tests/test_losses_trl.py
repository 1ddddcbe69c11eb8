"""Our implicit objectives pinned to TRL 1.16.0, the peer implementation, through its trainers' own loss code.

TRL 1.16 exposes no loss as a free function: DPO (`loss_type="sigmoid"`) and NCA (`"nca_pair"`) are branches of
`DPOTrainer._compute_loss`, KTO (`loss_type="kto"`) is `KTOTrainer._compute_loss`. So each test builds the trainer on
a tiny random Llama (hidden 16, 2 layers, a 78-token word-level tokenizer built here: nothing is downloaded) and a
tiny dataset, takes a batch from the trainer's own collator, replaces the reference log-probs that the trainer
precomputed (`precompute_ref_log_probs=True`) with seeded float64 values so that the implicit rewards span a chosen
range, and calls `trainer.compute_loss`. A profile
hook snapshots the locals of `_compute_loss` as it returns: the per-sequence summed log-probs TRL computed, its
rewards, its KL. Our loss is computed from those same sums, so both sides see identical inputs and only the loss
arithmetic is compared: the loss, the per-row rewards, the metrics TRL logs (rewards/chosen, rewards/rejected, kl)
and the gradients with respect to the model parameters (our loss is built on TRL's own graph).

Run with `-s` to see the table of max abs differences per loss.
"""
from __future__ import annotations

import contextlib
import math
import sys

import pytest
import torch

from implicit_prm.losses import LossBatch, dpo_loss, kto_loss, nca_loss

trl = pytest.importorskip("trl")
pytest.importorskip("datasets")

TOL = 1e-6
N_PAIRS = 4  # DPO / NCA batch: 4 pairs = 8 rows
N_KTO = 6  # KTO batch: 6 unpaired rows, 4 desirable and 2 undesirable

# (seed, beta, std of the implicit rewards): from near-zero rewards to saturated sigmoids
PAIRED_CASES = [(0, 0.05, 1.0), (1, 0.1, 3.0), (2, 0.5, 0.3), (3, 1.0, 10.0), (4, 0.1, 30.0), (5, 2.0, 1.0)]
# (seed, beta, std of the rewards, mean of beta * KL over the batch's mismatched pairs, desirable_weight,
#  undesirable_weight): the KL mean is negative (z0 clamped to 0) in some cases and positive in others
KTO_CASES = [(0, 0.1, 1.0, 0.5, 1.0, 1.0), (1, 0.1, 1.0, -0.5, 1.0, 1.0), (2, 0.5, 3.0, 1.5, 1.33, 0.7),
             (3, 1.0, 0.3, 0.2, 0.6, 2.0), (4, 0.05, 10.0, 2.0, 2.0, 1.0), (5, 2.0, 1.0, -1.0, 1.0, 1.5)]

_TABLE: dict[str, dict[str, float]] = {}  # loss -> {quantity: max abs difference}, printed at module teardown


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if _TABLE:
        cols = sorted({c for row in _TABLE.values() for c in row})
        print("\n\nmax |ours - TRL 1.16.0| over the seeded cases")
        print(f"{'':<6}" + "".join(f"{c:>14}" for c in cols))
        for name, row in _TABLE.items():
            print(f"{name:<6}" + "".join(f"{row[c]:>14.2e}" if c in row else f"{'-':>14}" for c in cols))


def _record(name: str, quantity: str, diff: float) -> None:
    row = _TABLE.setdefault(name, {})
    row[quantity] = max(row.get(quantity, 0.0), diff)


# ----------------------------------------------------------------------------- TRL plumbing

@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer built here (78 tokens: nothing to download, and a vocabulary small enough that TRL's
    fused log-prob head costs nothing on CPU)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>", "What", "is", "plus", "?", ".", ",", "It", "I", "think", "or", "maybe"]
    words += [str(i) for i in range(64)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _tiny_llama(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=256,
                      tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # spread the logits so that log-probs differ between responses
        model.lm_head.weight.normal_(0, 2.0)
    return model


@contextlib.contextmanager
def _quiet():
    """No progress bars while a trainer tokenizes its dataset and precomputes its reference log-probs."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TQDM_DISABLE", "1")
        try:
            yield
        finally:
            if enabled:
                datasets.enable_progress_bars()


def _args(tmp_path) -> dict:
    return dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, disable_tqdm=True, max_length=64,
                precompute_ref_log_probs=True, seed=0)


@pytest.fixture(scope="module")
def dpo_trainers(tokenizer, tmp_path_factory):
    """DPOTrainer per loss_type, built lazily (one per loss type, reused across the seeded cases)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rows = [{"prompt": f"What is {i} plus {i + 1}?", "chosen": f" {2 * i + 1}.",
             "rejected": f" It is {7 * i + 3}, I think, or maybe {i}."} for i in range(N_PAIRS)]
    built = {}

    def get(loss_type: str):
        if loss_type not in built:
            args = DPOConfig(loss_type=[loss_type], beta=0.1, per_device_train_batch_size=N_PAIRS,
                             **_args(tmp_path_factory.mktemp(f"dpo_{loss_type}")))
            with _quiet():
                built[loss_type] = DPOTrainer(model=_tiny_llama(tokenizer), args=args,
                                              train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        return built[loss_type]
    return get


@pytest.fixture(scope="module")
def kto_trainer(tokenizer, tmp_path_factory):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    labels = [True, False, True, True, False, True]
    rows = [{"prompt": f"What is {i} plus {i + 1}?", "label": lab,
             "completion": f" {2 * i + 1}." if lab else f" It is {7 * i + 3}, I think."}
            for i, lab in enumerate(labels)]
    args = KTOConfig(loss_type="kto", beta=0.1, per_device_train_batch_size=N_KTO,
                     **_args(tmp_path_factory.mktemp("kto")))
    with _quiet():
        return KTOTrainer(model=_tiny_llama(tokenizer), args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer)


@contextlib.contextmanager
def _locals_at_return(method):
    """The locals of `method` (a TRL trainer method) as it returns: TRL's own intermediate tensors, graph included."""
    code, seen = method.__code__, {}
    previous = sys.getprofile()

    def hook(frame, event, arg):
        if event == "return" and frame.f_code is code:
            seen.update(frame.f_locals)
    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def _trl_loss(trainer, batch, names):
    """trainer.compute_loss on `batch` (train mode), TRL's locals in `_compute_loss` and the metrics it logged."""
    trainer.model.train()
    trainer._metrics["train"].clear()
    with _locals_at_return(type(trainer)._compute_loss) as loc:
        loss = trainer.compute_loss(trainer.model, batch)
    missing = [n for n in names if n not in loc]
    if missing:
        pytest.fail(f"TRL {trl.__version__}: {type(trainer).__name__}._compute_loss has no local {missing}; "
                    "these tests read the internals of TRL 1.16.0")
    return loss, loc, {k: v[-1] for k, v in trainer._metrics["train"].items()}


def _batch(trainer, n):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def _grad_diff(trl_loss, our_loss, model) -> float:
    """max |d ours/d theta - d TRL/d theta| over the model parameters (both losses hang on the same forward)."""
    params = [p for p in model.parameters() if p.requires_grad]
    g_trl = torch.autograd.grad(trl_loss, params, retain_graph=True, allow_unused=True)
    g_our = torch.autograd.grad(our_loss, params, allow_unused=True)
    pairs = [(a, b) for a, b in zip(g_trl, g_our) if a is not None or b is not None]
    assert pairs and all(a is not None and b is not None for a, b in pairs)
    assert max(a.abs().max().item() for a, _ in pairs) > 0  # the comparison is not 0 == 0
    return max((a - b).abs().max().item() for a, b in pairs)


# ----------------------------------------------------------------------------- DPO / NCA

@pytest.mark.parametrize("name,loss_type,fn", [("dpo", "sigmoid", dpo_loss), ("nca", "nca_pair", nca_loss)])
def test_paired_loss_equals_trl(dpo_trainers, name, loss_type, fn):
    """dpo_loss == DPOTrainer(loss_type="sigmoid"), nca_loss == DPOTrainer(loss_type="nca_pair"): loss, the
    per-pair rewards TRL computes, its logged reward means, and the gradient, on seeded inputs."""
    trainer = dpo_trainers(loss_type)
    for seed, beta, scale in PAIRED_CASES:
        trainer.beta = beta  # `_compute_loss` reads self.beta, copied from DPOConfig.beta at init
        batch = _batch(trainer, N_PAIRS)
        g = torch.Generator().manual_seed(seed)
        # precomputed ref == policy at init, so r = beta (logps - ref) ~ N(0, scale) with these refs
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            batch[key] = batch[key].double() - torch.randn(N_PAIRS, generator=g, dtype=torch.float64) * scale / beta
        loss, loc, metrics = _trl_loss(trainer, batch, ["chosen_logps", "rejected_logps", "chosen_rewards",
                                                        "rejected_rewards"])
        assert loc["ref_chosen_logps"] is batch["ref_chosen_logps"]  # TRL used the injected references

        logps = torch.cat([loc["chosen_logps"], loc["rejected_logps"]]).double()  # TRL's own sums, with grad
        ref = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]])
        out = fn(LossBatch(torch.cat([torch.ones(N_PAIRS), torch.zeros(N_PAIRS)]), logps, ref, beta))

        assert loss.dtype == torch.float64
        d_loss = (out.loss - loss).abs().item()
        trl_rewards = torch.cat([loc["chosen_rewards"], loc["rejected_rewards"]])
        d_rewards = (out.rewards - trl_rewards).abs().max().item()
        d_metrics = max(abs(out.rewards[:N_PAIRS].mean().item() - metrics["rewards/chosen"]),
                        abs(out.rewards[N_PAIRS:].mean().item() - metrics["rewards/rejected"]))
        d_grad = _grad_diff(loss, out.loss, trainer.model)
        assert d_loss < TOL and d_rewards < TOL and d_metrics < TOL and d_grad < TOL, (seed, beta, scale)
        assert out.rewards.abs().max().item() > 0.1 * scale  # the rewards really span the intended range
        for q, d in [("loss", d_loss), ("rewards", d_rewards), ("metrics", d_metrics), ("grad", d_grad)]:
            _record(name, q, d)
    print(f"\n{name}: max |loss diff| {_TABLE[name]['loss']:.2e}, max |reward diff| {_TABLE[name]['rewards']:.2e} "
          f"over {len(PAIRED_CASES)} cases")


# ----------------------------------------------------------------------------- KTO

def _kto_inputs(trainer, seed, beta, scale, kl_mean):
    """A collated KTO batch whose precomputed references give r ~ N(0, scale) and beta * (KL pair log-ratios)
    ~ kl_mean + N(0, scale / 4)."""
    batch = _batch(trainer, N_KTO)
    g = torch.Generator().manual_seed(seed)
    r_noise = torch.randn(N_KTO, generator=g, dtype=torch.float64) * scale
    batch["ref_logps"] = batch["ref_logps"].double() - r_noise / beta
    kl_noise = torch.randn(N_KTO, generator=g, dtype=torch.float64) * scale / 4
    batch["ref_KL_logps"] = batch["ref_KL_logps"].double() - (kl_mean + kl_noise - kl_noise.mean()) / beta
    return batch


def _our_kto(batch, loc, beta, w_d, w_u):
    ours = LossBatch(batch["label"].double(), loc["completion_logps"].double(), batch["ref_logps"], beta,
                     kl_logps=loc["KL_logps"].double(), kl_ref_logps=batch["ref_KL_logps"])
    return ours, kto_loss(ours, desirable_weight=w_d, undesirable_weight=w_u)


def _hand_kto(r, labels, z0, w_d, w_u) -> float:
    """The KTO loss by hand: mean_i w_i (1 - sigma(+-(r_i - z0)))."""
    terms = [(w_d * (1 - 1 / (1 + math.exp(-(ri - z0))))) if li else (w_u * (1 - 1 / (1 + math.exp(-(z0 - ri)))))
             for ri, li in zip(r, labels)]
    return sum(terms) / len(terms)


KTO_NAMES = ["completion_logps", "KL_logps", "ref_KL_logps", "kl", "chosen_rewards", "rejected_rewards",
             "chosen_losses", "rejected_losses"]


def test_kto_loss_equals_trl(kto_trainer):
    """kto_loss == KTOTrainer(loss_type="kto"), with desirable/undesirable weights != 1 and the KL reference point
    both clamped (negative KL mean) and not: loss, per-row rewards, logged rewards/chosen, rewards/rejected and kl
    (TRL logs the KL in log-prob units, before beta: our z0 = beta * kl), and the gradient."""
    trainer, clamped = kto_trainer, []
    for seed, beta, scale, kl_mean, w_d, w_u in KTO_CASES:
        trainer.beta, trainer.desirable_weight, trainer.undesirable_weight = beta, w_d, w_u  # read by _compute_loss
        batch = _kto_inputs(trainer, seed, beta, scale, kl_mean)
        loss, loc, metrics = _trl_loss(trainer, batch, KTO_NAMES)
        assert loc["ref_KL_logps"] is batch["ref_KL_logps"]
        ours, out = _our_kto(batch, loc, beta, w_d, w_u)
        labels = batch["label"]

        z0 = max(0.0, ours.kl_rewards().mean().item())  # our reference point, as kto_loss defines it
        clamped.append(z0 == 0.0)
        assert loss.dtype == torch.float64
        d_loss = (out.loss - loss).abs().item()
        d_rewards = max((out.rewards[labels] - loc["chosen_rewards"]).abs().max().item(),
                        (out.rewards[~labels] - loc["rejected_rewards"]).abs().max().item())
        d_metrics = max(abs(out.rewards[labels].mean().item() - metrics["rewards/chosen"]),
                        abs(out.rewards[~labels].mean().item() - metrics["rewards/rejected"]))
        d_kl = abs(z0 - beta * metrics["kl"])
        d_grad = _grad_diff(loss, out.loss, trainer.model)
        assert d_loss < TOL and d_rewards < TOL and d_metrics < TOL and d_kl < TOL and d_grad < TOL, seed
        # and both equal the formula by hand
        assert abs(out.loss.item() - _hand_kto(out.rewards.tolist(), labels.tolist(), z0, w_d, w_u)) < 1e-12
        # TRL normalises like we do: the weighted losses of both classes averaged over all B rows (not per class,
        # not divided by the sum of the weights)
        n_d = int(labels.sum())
        assert abs(loss.item() - (w_d * loc["chosen_losses"].sum().item()
                                  + w_u * loc["rejected_losses"].sum().item()) / N_KTO) < 1e-12
        if w_d != w_u:
            by_weight = (w_d * loc["chosen_losses"].sum() + w_u * loc["rejected_losses"].sum()) / (
                n_d * w_d + (N_KTO - n_d) * w_u)
            assert abs(loss.item() - by_weight.item()) > 1e-4
        for q, d in [("loss", d_loss), ("rewards", d_rewards), ("metrics", d_metrics), ("kl", d_kl),
                     ("grad", d_grad)]:
            _record("kto", q, d)
    assert any(clamped) and not all(clamped)  # the cases cover both sides of the clamp at 0
    print(f"\nkto: max |loss diff| {_TABLE['kto']['loss']:.2e}, max |reward diff| {_TABLE['kto']['rewards']:.2e}, "
          f"max |z0 - beta * TRL kl| {_TABLE['kto']['kl']:.2e} over {len(KTO_CASES)} cases")


def test_kto_reference_point_has_no_gradient(kto_trainer):
    """TRL computes the policy's KL log-probs under no_grad and detaches the KL; our z0 is detached too, so a
    kl_logps that requires grad gets none."""
    trainer = kto_trainer
    trainer.beta, trainer.desirable_weight, trainer.undesirable_weight = 0.1, 1.0, 1.0
    batch = _kto_inputs(trainer, 7, 0.1, 1.0, 0.5)
    _, loc, _ = _trl_loss(trainer, batch, KTO_NAMES)
    assert not loc["KL_logps"].requires_grad and not loc["kl"].requires_grad
    kl_logps = loc["KL_logps"].double().requires_grad_()
    out = kto_loss(LossBatch(batch["label"].double(), loc["completion_logps"].double(), batch["ref_logps"], 0.1,
                             kl_logps=kl_logps, kl_ref_logps=batch["ref_KL_logps"]))
    (g,) = torch.autograd.grad(out.loss, kl_logps, allow_unused=True)
    assert g is None or not g.any()


def test_kto_kl_pairs_trl_rotates_the_other_way(kto_trainer):
    """TRL's mismatched pair for row i is (x_i, y_{i-1}), fixed when the dataset is prepared, within consecutive
    chunks of per_device_train_batch_size (hence its sequential sampling). Our train loop forms (x_i, y_{i+1}) within
    each micro-batch when it is built. kto_loss takes whatever pairs it is given; this pins TRL's side."""
    batch = _batch(kto_trainer, N_KTO)

    def completions(ids, mask):
        return [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    main = completions(batch["input_ids"], batch["completion_mask"])
    kl = completions(batch["KL_input_ids"], batch["KL_completion_mask"])
    assert kl == [main[(i - 1) % N_KTO] for i in range(N_KTO)]
    assert kl != [main[(i + 1) % N_KTO] for i in range(N_KTO)]


def test_kto_kl_differs_from_trl_across_processes(kto_trainer, monkeypatch):
    """Deliberate difference. TRL gathers each process's batch-mean KL, averages them and only then clamps at 0:
    z0_TRL = beta * max(0, mean_p KL_p). Our z0 is the clamped mean over this micro-batch's mismatched pairs alone.
    On one process they coincide (test above); here a second process is simulated by making TRL's gather of the KL
    return [KL_local, +9 nats]. With KL_local ~ -3 nats, TRL's reference point is beta * 3, ours is 0, and the two
    losses differ by the amount computed by hand."""
    trainer = kto_trainer
    beta, w_d, w_u, other = 0.1, 1.3, 0.7, 9.0
    trainer.beta, trainer.desirable_weight, trainer.undesirable_weight = beta, w_d, w_u
    batch = _kto_inputs(trainer, 11, beta, 1.0, -3.0 * beta)

    gather, code, seen = trainer.accelerator.gather_for_metrics, type(trainer)._compute_loss.__code__, []

    def two_process_gather(t, *args, **kwargs):
        if sys._getframe(1).f_code is code and not seen:  # the first gather in _compute_loss is the KL's
            seen.append(t.detach().clone())
            return torch.stack([t, t.new_tensor(other)])
        return gather(t, *args, **kwargs)
    monkeypatch.setattr(trainer.accelerator, "gather_for_metrics", two_process_gather)
    loss, loc, metrics = _trl_loss(trainer, batch, KTO_NAMES)
    monkeypatch.undo()

    kl_local = (loc["KL_logps"] - loc["ref_KL_logps"]).mean().item()  # nats, before beta
    assert seen and abs(seen[0].item() - kl_local) < 1e-12  # the intercepted gather was the KL's
    assert -3.5 < kl_local < -2.5
    kl_trl = max(0.0, (kl_local + other) / 2)
    assert abs(metrics["kl"] - kl_trl) < 1e-9

    ours, out = _our_kto(batch, loc, beta, w_d, w_u)
    r, labels = out.rewards.tolist(), batch["label"].tolist()
    hand_trl, hand_ours = _hand_kto(r, labels, beta * kl_trl, w_d, w_u), _hand_kto(r, labels, 0.0, w_d, w_u)
    assert abs(loss.item() - hand_trl) < 1e-9
    assert abs(out.loss.item() - hand_ours) < 1e-12
    diff = out.loss.item() - loss.item()
    assert abs(diff - (hand_ours - hand_trl)) < 1e-9 and abs(diff) > 1e-3
    print(f"\nkto, 2 simulated processes (local KL {kl_local:.3f} nats, other +{other:.0f}): "
          f"TRL z0 = {beta * kl_trl:.4f}, ours 0; loss ours {out.loss.item():.6f} vs TRL {loss.item():.6f}, "
          f"difference {diff:+.6f} (hand {hand_ours - hand_trl:+.6f})")
    # on one process (no simulated peer) TRL's z0 is the clamped local mean: 0 here, and the losses agree
    loss1, loc1, _ = _trl_loss(trainer, batch, KTO_NAMES)
    assert loc1["kl"].item() == 0.0 and abs(loss1.item() - out.loss.item()) < TOL
