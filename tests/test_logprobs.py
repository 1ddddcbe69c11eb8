"""Chunked per-token log-probs against the full log_softmax, TokenLogProbs on a tiny model, and length batching."""
import pytest
import torch
from torch import nn

import implicit_prm.models.logprobs as L
from implicit_prm.models.logprobs import TokenLogProbs, chunked_token_logprobs, full_token_logprobs
from implicit_prm.steps.batching import length_batches, pad_batch, response_slices
from implicit_prm.steps.encoding import Encoded

B, T, H, V = 2, 7, 8, 11


@pytest.fixture
def setup():
    torch.manual_seed(0)
    head = nn.Linear(H, V)
    with torch.no_grad():
        head.weight.mul_(4)  # spread the logits
    hidden = torch.randn(B, T, H)
    targets = torch.randint(0, V, (B, T))
    return head, hidden, targets


@pytest.mark.parametrize("chunk", [1, 3, T, B * T, B * T + 5])
def test_chunked_equals_full(setup, chunk):
    head, hidden, targets = setup
    with torch.no_grad():
        full = full_token_logprobs(head(hidden), targets)  # (B, T)
        got = chunked_token_logprobs(hidden, head, targets, chunk=chunk)
    assert got.shape == (B, T) and got.dtype == torch.float32
    torch.testing.assert_close(got, full, atol=1e-5, rtol=0)
    assert (got < 0).all()


def test_full_token_logprobs_by_hand():
    # logits [0, ln 3] -> softmax [1/4, 3/4]; target 1 -> log 0.75, target 0 -> log 0.25
    logits = torch.tensor([[[0.0, torch.log(torch.tensor(3.0)).item()]] * 2])  # (1, 2, 2)
    got = full_token_logprobs(logits, torch.tensor([[1, 0]]))
    torch.testing.assert_close(got, torch.log(torch.tensor([[0.75, 0.25]])))


def capped_full(head, h, targets, softcap=None, scale=None):
    """The naive reference: the whole (B, T, V) float32 log-softmax, then the targets."""
    logits = head(h).float()
    if scale is not None:
        logits = logits * scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]


class Wrapped(nn.Module):
    """A head that is not an nn.Linear: chunked_token_logprobs checkpoints it per chunk."""

    def __init__(self, inner: nn.Linear):
        super().__init__()
        self.inner = inner

    def forward(self, h):
        return self.inner(h)


@pytest.mark.parametrize("chunk", [1, 3, T, T + 5])
@pytest.mark.parametrize("kind", ["linear", "module"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("softcap,scale", [(None, None), (2.0, None), (None, 0.25), (3.0, 1.5)])
def test_chunked_gradients_match_full(setup, chunk, kind, bias, softcap, scale, monkeypatch):
    head, hidden, targets = setup
    if not bias:
        head.bias = None
    weights = torch.randn(B, T)  # a loss that weighs each position differently
    params = [p for p in head.parameters()]

    h_full = hidden.clone().requires_grad_()
    (capped_full(head, h_full, targets, softcap, scale) * weights).sum().backward()
    grads_full = [h_full.grad] + [p.grad.clone() for p in params]
    head.zero_grad()

    calls = []
    real = L.checkpoint
    monkeypatch.setattr(L, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    h = hidden.clone().requires_grad_()
    used = head if kind == "linear" else Wrapped(head)
    (chunked_token_logprobs(h, used, targets, chunk, softcap, scale) * weights).sum().backward()
    # the module path checkpoints every chunk of the flattened (B*T) tokens; the fused linear path none
    assert len(calls) == (0 if kind == "linear" else -(-(B * T) // chunk))
    for got, want in zip([h.grad] + [p.grad for p in params], grads_full):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_fused_head_by_hand():
    # h = [1, 0], W = I (2x2), no bias: logits [1, 0]; target 0: log p = 1 - log(e + 1) = -0.31326...
    # d log p / d logits = onehot - softmax = [1 - e/(e+1), -1/(e+1)] = [0.26894, -0.26894]; dW = that outer h
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    h = torch.tensor([[1.0, 0.0]], requires_grad=True)
    out = chunked_token_logprobs(h, head, torch.tensor([0]))
    torch.testing.assert_close(out, torch.tensor([-0.313262]), atol=1e-6, rtol=0)
    out.sum().backward()
    g = 1 / (1 + torch.e)
    torch.testing.assert_close(h.grad, torch.tensor([[g, -g]]), atol=1e-6, rtol=0)  # W^T (onehot - softmax)
    torch.testing.assert_close(head.weight.grad, torch.tensor([[g, 0.0], [-g, 0.0]]), atol=1e-6, rtol=0)


def test_fused_head_bf16_autocast_within_tolerance(setup):
    """Under bf16 autocast (the CPU training recipe) the fused head computes its matmuls in bf16 like head(h)
    would: log-probs within 0.05 nats of float32, and gradients within 3% of their largest entry."""
    head, hidden, targets = setup
    h32 = hidden.clone().requires_grad_()
    chunked_token_logprobs(h32, head, targets, chunk=3).sum().backward()
    want = (h32.grad, head.weight.grad.clone())
    head.zero_grad()
    h16 = hidden.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = chunked_token_logprobs(h16, head, targets, chunk=3)
    assert got.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(got, capped_full(head, hidden, targets), atol=0.05, rtol=0)
    got.sum().backward()
    assert head.weight.grad.dtype == torch.float32
    for g, w in zip((h16.grad, head.weight.grad), want):
        assert (g.float() - w).abs().max() <= 0.03 * w.abs().max()


def test_no_checkpoint_without_autograd(setup, monkeypatch):
    head, hidden, targets = setup
    monkeypatch.setattr(L, "checkpoint", lambda *a, **k: pytest.fail("checkpoint used under no_grad"))
    with torch.no_grad():
        chunked_token_logprobs(hidden.requires_grad_(), Wrapped(head), targets, chunk=3)
    # hidden without grad, head with grad: no checkpoint, but the head still gets its gradient
    chunked_token_logprobs(hidden.detach(), Wrapped(head), targets, chunk=3).sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    head.zero_grad()
    chunked_token_logprobs(hidden.detach(), head, targets, chunk=3).sum().backward()  # the same on the fused path
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_empty_targets_stay_attached(setup):
    head, hidden, _ = setup
    h = hidden.clone().requires_grad_()
    out = chunked_token_logprobs(h[:, :0], head, torch.zeros(B, 0, dtype=torch.long))
    assert out.shape == (B, 0)
    out.sum().backward()  # no error: attached to the graph
    assert h.grad is not None and h.grad.abs().sum() == 0


@pytest.mark.parametrize("softcap,scale", [(2.0, None), (None, 0.25), (3.0, 1.5)])
def test_softcap_and_scale(setup, softcap, scale):
    head, hidden, targets = setup
    with torch.no_grad():
        logits = head(hidden)
        if scale is not None:
            logits = logits * scale  # logit_scale (Cohere)
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)  # final_logit_softcapping (Gemma 2)
        want = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
        got = chunked_token_logprobs(hidden, head, targets, chunk=3, softcap=softcap, scale=scale)
        plain = chunked_token_logprobs(hidden, head, targets, chunk=3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (got - plain).abs().max() > 1e-2  # the option did something


# ---------------------------------------------------------------- TokenLogProbs on the tiny model


@pytest.fixture(scope="module")
def lm(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


def test_token_logprobs_equal_model_logits(lm):
    torch.manual_seed(1)
    ids = torch.randint(3, 1000, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    mask[2, 4:] = 0
    ids[mask == 0] = 2  # pad id
    with torch.no_grad():
        got = TokenLogProbs(lm, chunk=4)(ids, mask)  # (3, 8)
        logits = lm(input_ids=ids, attention_mask=mask).logits  # (3, 9, V)
    want = torch.log_softmax(logits.float(), -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # (3, 8)
    assert got.shape == (3, 8)
    real = mask[:, 1:].bool()  # positions whose target is a real token
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=0)


def test_positions_narrow_the_head_and_keep_values_and_gradients(lm):
    # positions selects where the LM head runs: there the values and their gradients equal the unnarrowed
    # forward's, elsewhere the result is exactly 0.
    torch.manual_seed(2)
    ids = torch.randint(3, 1000, (2, 7))
    mask = torch.ones_like(ids)
    tlp = TokenLogProbs(lm, chunk=3)
    pos = torch.zeros(2, 5, dtype=torch.bool)  # start=1: (2, 7-1-1) positions
    pos[0, 2:] = True
    pos[1, 1:3] = True
    weights = torch.randn(2, 5)
    full = tlp(ids, mask, 1)
    (full * weights * pos).sum().backward()
    want_grad = lm.model.layers[0].mlp.up_proj.weight.grad.clone()
    lm.zero_grad()
    got = tlp(ids, mask, 1, pos)
    (got * weights).sum().backward()
    try:
        assert got.shape == (2, 5)
        assert (got[~pos] == 0).all()
        torch.testing.assert_close(got[pos], full[pos].detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(lm.model.layers[0].mlp.up_proj.weight.grad, want_grad, atol=1e-5, rtol=1e-4)
    finally:
        lm.zero_grad(set_to_none=True)


def test_right_padding_does_not_change_real_tokens(lm):
    tlp = TokenLogProbs(lm)
    short, long = [5, 17, 300, 42, 7], [9, 8, 7, 6, 5, 4, 3, 200, 100]
    with torch.no_grad():
        alone = tlp(torch.tensor([short]), torch.ones(1, 5, dtype=torch.long))[0]  # (4,)
        ids, mask = pad_batch([short, long], pad_id=2, device="cpu")
        batched = tlp(ids, mask)  # (2, 8)
        long_alone = tlp(torch.tensor([long]), torch.ones(1, 9, dtype=torch.long))[0]
    torch.testing.assert_close(batched[0, :4], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched[1], long_alone, atol=1e-5, rtol=0)


def test_token_logprobs_reads_softcap_and_scale_from_config(lm):
    tlp = TokenLogProbs(lm)
    assert tlp.softcap is None and tlp.scale is None
    lm.config.final_logit_softcapping, lm.config.logit_scale = 30.0, 0.5
    try:
        tlp = TokenLogProbs(lm)
        assert (tlp.softcap, tlp.scale) == (30.0, 0.5)
    finally:
        del lm.config.final_logit_softcapping, lm.config.logit_scale


# ---------------------------------------------------------------- batching


def test_length_batches_worked_example():
    # lengths 5 3 8 2 8, batch_tokens 16; sorted longest first (ties by index): idx 2(8) 4(8) 0(5) 1(3) 3(2).
    # best[i] = min over k of k*L[i] + overhead + best[i+k], k*L[i] <= 16. With overhead 4:
    #   i=4 (2): 2+4 = 6                    i=3 (3): k1 3+4+6 = 13, k2 6+4 = 10 -> 10
    #   i=2 (5): k1 5+4+10 = 19, k2 10+4+6 = 20, k3 15+4 = 19 -> 19 (tie: larger batch)
    #   i=1 (8): k1 8+4+19 = 31, k2 16+4+10 = 30 -> 30
    #   i=0 (8): k1 8+4+30 = 42, k2 16+4+19 = 39 -> 39: [2, 4] then [0, 1, 3]
    assert length_batches([5, 3, 8, 2, 8], batch_tokens=16, overhead_tokens=4) == [[2, 4], [0, 1, 3]]
    # Without a per-call cost, padding alone decides: no padding at all. i=0: k1 8+18 = k2 16+10 = 26 -> [2, 4];
    # i=2: k1 5+5 = 10 < k2 10+2 < k3 15 -> [0]; i=3: k1 3+2 = 5 < k2 6 -> [1]; then [3].
    assert length_batches([5, 3, 8, 2, 8], batch_tokens=16) == [[2, 4], [0], [1], [3]]
    # a short sequence is not padded up to a long one when that costs more than a call: 100 then 10 x 3
    assert length_batches([100, 10, 10, 10], batch_tokens=1000, overhead_tokens=50) == [[0], [1, 2, 3]]
    # ... but joins it when the call costs more than the padding
    assert length_batches([100, 90], batch_tokens=1000, overhead_tokens=50) == [[0, 1]]
    # a sequence longer than batch_tokens still gets a batch of its own
    assert length_batches([20, 3], batch_tokens=16) == [[0], [1]]
    # max_batch caps the count: 5 items of length 1, max_batch 2
    assert length_batches([1] * 5, batch_tokens=100, max_batch=2, overhead_tokens=10) == [[0, 1], [2, 3], [4]]
    assert length_batches([], batch_tokens=16) == []


def test_length_batches_cover_every_index_once():
    lengths = [(i * 37) % 23 + 1 for i in range(50)]
    batches = length_batches(lengths, batch_tokens=60, max_batch=8)
    assert sorted(i for b in batches for i in b) == list(range(50))
    for b in batches:
        assert len(b) == 1 or (len(b) <= 8 and max(lengths[i] for i in b) * len(b) <= 60)


def test_pad_batch_exact_tensors():
    ids, mask = pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_response_slices():
    # prompt of 3 tokens, response of 2: positions 2, 3 of the (T-1) next-token row predict the response
    lp = torch.arange(12.0).reshape(2, 6)
    encs = [Encoded([1, 2, 3], [4, 5], [0, 0], 1), Encoded([1], [4, 5, 6], [0, 0, 0], 1)]
    got = response_slices(lp, encs)
    assert [g.tolist() for g in got] == [[2.0, 3.0], [6.0, 7.0, 8.0]]


def test_batch_plan_shares_prompts_worked_example():
    from implicit_prm.steps.batching import batch_plan

    e = lambda p, r: Encoded(p, r, [0] * len(r), 1)  # noqa: E731
    encs = [e([1, 2, 3], [4, 5]), e([9, 9], [7]), e([1, 2, 3], [6, 6, 6, 6]), e([1, 2, 3], [8])]
    # prompt [1,2,3] has three responses: shared batches, lengths 3+resp = 5, 7, 4, overhead 0 + prompt 3.
    # Sorted 7 (e2), 5 (e0), 4 (e3): best(4) = 4+3 = 7; best(5) = min(5+3+7, 10+3) = 13;
    # best(7) = min(7+3+13 = 23, 14+3+7 = 24, 21+3 = 24) = 23 -> [e2], [e0, e3]. Prompt [9,9] has one: plain.
    # Largest first by size x longest: [e0, e3] 2x5, [e2] 7, [e1] 3.
    assert batch_plan(encs, 100) == [(True, [0, 3]), (True, [2]), (False, [1])]
    # without sharing: plain length batches, no padding without a call cost -> singletons, longest first
    assert batch_plan(encs, 100, share_prefix=False) == [(False, [2]), (False, [0]), (False, [3]), (False, [1])]


def test_shared_prefix_log_probs_equal_plain_batches(lm):
    from implicit_prm.scoring.forward import response_logprobs
    from implicit_prm.steps.batching import batch_plan

    class NoSharing(TokenLogProbs):
        can_share_prefix = False

    torch.manual_seed(3)
    prompts = [torch.randint(3, 1000, (n,)).tolist() for n in (6, 11)]
    encs = [Encoded(prompts[i % 2], torch.randint(3, 1000, (n,)).tolist(), [0] * n, 1)
            for i, n in enumerate([5, 9, 3, 12, 7])]
    tlp = TokenLogProbs(lm, chunk=4)
    assert tlp.can_share_prefix
    assert [shared for shared, _ in batch_plan(encs, 64)] == [True, True]  # 3 + 2 responses to 2 prompts
    got = response_logprobs(tlp, encs, pad_id=2, device="cpu", batch_tokens=64, show=False)
    want = response_logprobs(NoSharing(lm, chunk=4), encs, pad_id=2, device="cpu", batch_tokens=64, show=False)
    for g, w, e in zip(got, want, encs):
        assert g.shape == (len(e.response_ids),)
        torch.testing.assert_close(torch.from_numpy(g), torch.from_numpy(w), atol=1e-5, rtol=0)


def test_batch_plan_does_not_share_a_short_prompt_before_long_responses():
    from implicit_prm.steps.batching import batch_plan

    e = lambda p, n: Encoded(p, [5] * n, [0] * n, 1)  # noqa: E731
    # prompt 40, two responses of 2048, batches of 8192: k = min(2, 8192 // 2088) = 2.
    # Saved per response 40 * (1 - 1/2) = 20 tokens; masked attention costs 2048^2 / 7800 = 538 -> not shared.
    long = [e([1] * 40, 2048), e([1] * 40, 2048)]
    assert [s for s, _ in batch_plan(long, 8192, attention_context=7800)] == [False]
    # prompt 59, six responses of 83: saved 59 * (1 - 1/6) = 49.2 > 83^2 / 7800 = 0.9 -> shared
    short = [e([1] * 59, 83) for _ in range(6)]
    assert [s for s, _ in batch_plan(short, 8192, attention_context=7800)] == [True]


def test_attention_context_and_prefix_sharing_follow_the_config(lm):
    tlp = TokenLogProbs(lm)
    c = lm.config
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads
    per_layer = 2 * c.hidden_size * c.num_attention_heads * hd + 2 * c.hidden_size * kv * hd \
        + 3 * c.hidden_size * c.intermediate_size
    assert tlp.attention_context == per_layer / c.hidden_size
    assert tlp.can_share_prefix
    saved = getattr(c, "layer_types", None)
    c.layer_types = ["full_attention", "linear_attention"]  # a hybrid model: recurrent states do not repeat
    try:
        assert not tlp.can_share_prefix
    finally:
        c.layer_types = saved


def test_positions_all_false_gives_zeros_with_a_graph(lm):
    ids = torch.randint(3, 1000, (2, 6))
    out = TokenLogProbs(lm)(ids, None, 0, torch.zeros(2, 5, dtype=torch.bool))
    assert out.shape == (2, 5) and (out == 0).all() and out.requires_grad
    out.sum().backward()  # no error: the graph reaches the weights
    lm.zero_grad(set_to_none=True)


def test_frozen_head_cast_reused_until_the_weight_changes():
    """cast_weight keeps a frozen CPU weight's bf16 cast across calls, recasts after an in-place change (its
    version moves) and drops the entry when the weight dies; trainable weights are cast every time."""
    w = torch.tensor([[1.0, 2.0], [3.0, 1.0 + 2 ** -10]])  # 1 + 2^-10 rounds to 1 in bf16
    first = L.cast_weight(w, torch.bfloat16)
    assert first.dtype == torch.bfloat16 and first[1, 1].item() == 1.0
    assert L.cast_weight(w, torch.bfloat16) is first  # reused
    assert L.cast_weight(w, torch.float32) is w  # no cast needed
    with torch.no_grad():
        w.mul_(2)  # as an optimizer step or load_state_dict would
    again = L.cast_weight(w, torch.bfloat16)
    assert again is not first and again[1, 0].item() == 6.0
    key = id(w)
    assert key in L._CASTS
    del w
    assert key not in L._CASTS
    p = nn.Parameter(torch.ones(2, 2))  # requires grad: never cached
    assert L.cast_weight(p, torch.bfloat16) is not L.cast_weight(p, torch.bfloat16)


def test_head_logprobs_same_bits_with_a_cached_cast(setup):
    """A frozen head (LoRA's) gives the same log-probs and input gradients on the first call, which casts its
    weight, and on the next, which reuses the cast; and a changed weight changes the result."""
    head, hidden, targets = setup
    head.requires_grad_(False)
    runs = []
    for _ in range(2):
        h = hidden.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = chunked_token_logprobs(h, head, targets, chunk=4)
        (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        runs.append((out.detach(), h.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    with torch.no_grad():
        head.weight[0].add_(1.0)  # one vocabulary row: a shift of all rows would cancel
        with torch.autocast("cpu", dtype=torch.bfloat16):
            moved = chunked_token_logprobs(hidden, head, targets, chunk=4)
    assert not torch.equal(moved, runs[0][0])
