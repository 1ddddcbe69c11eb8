"""Property tests (hypothesis) of steps -> spans -> tokens -> rewards, with the real SmolLM2 tokenizer.

Texts mix multi-byte characters (accents, CJK, emoji, ZWJ sequences, combining marks), step separators inside a
step's own text (blank lines, "Step k:" markers), and empty or whitespace-only edges.
"""
from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from implicit_prm.rewards import aggregate, q_values, step_rewards, token_rewards
from implicit_prm.steps.encoding import Encoder
from implicit_prm.steps.splitting import BLANK_LINE, STEP_MARKER, step_spans

# characters that are more than one byte in UTF-8, or more than one code point per glyph
MULTI_BYTE = ["é", "ß", "ñ", "中", "文", "の", "я", "€", "½", "😀", "🧮", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "a\u0308\u0323",
              "\u200b", "\u00a0", "\u3000", "\u2028"]
SEPARATORS = ["\n\n", "\n", " ", "\t", "\n \n", "\r\n\r\n", "\n\n\n", " \n\t\n", "Step 1:", "Step 2.", "\nStep 3: ",
              "  Step 10:", "Step4:", "\n\nStep 2:", "step 1:", "="]
WORDS = ["7 + 5 = 12", "x", "The answer is 36.", "\\boxed{4}", "so", "then", "(", ")", "-3", "1,000", "$5"]

chars = st.one_of(st.sampled_from(MULTI_BYTE), st.characters(codec="utf-8"),
                  st.characters(min_codepoint=32, max_codepoint=126))
# a piece of text, possibly empty, possibly one of the separators (so separators land inside steps)
pieces = st.one_of(st.lists(chars, max_size=8).map("".join), st.sampled_from(SEPARATORS), st.sampled_from(WORDS),
                   st.sampled_from(MULTI_BYTE))
texts = st.lists(pieces, max_size=12).map("".join)
edges = st.sampled_from(["", "", " ", "\n", "\n\n", "  \n", "\t", " \n\n "])


@st.composite
def responses(draw) -> str:
    """A response with random (often whitespace) edges."""
    return draw(edges) + draw(texts) + draw(edges)


@st.composite
def step_lists(draw) -> tuple[list[str], str]:
    """(steps, separator); steps may be empty, whitespace-only, or hold the separator or markers themselves."""
    steps = draw(st.lists(st.one_of(responses(), st.just(""), edges), min_size=1, max_size=6))
    separator = draw(st.sampled_from(["\n\n", "\n", " ", "", "\n\nStep: ", "\u2028", "中"]))
    return steps, separator


REGEXES = [r"\n", r"\n+", r"\.\s", r"[.!?]", r"(?m)^", r"x*", r"(?=Step)", r"\s", "中|😀", r"\b"]
MODES = ["auto", "markers", "blank", "regex"]


def assert_partition(spans: list[tuple[int, int]], n: int) -> None:
    """The spans cover [0, n) exactly, in order, with no gap or overlap."""
    assert spans, "no spans"
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (s, e), (s2, _) in zip(spans, spans[1:]):
        assert e == s2
    assert all(s <= e for s, e in spans)


@settings(max_examples=300)
@given(response=responses(), mode=st.sampled_from(MODES), regex=st.sampled_from(REGEXES))
def test_spans_partition_the_response(response, mode, regex):
    spans = step_spans(response, None, mode, regex)
    assert_partition(spans, len(response))
    if response:  # split at separators: never an empty step, each boundary where the rule says
        assert all(s < e for s, e in spans)
    bounds = {s for s, _ in spans[1:]}
    resolved = mode if mode != "auto" else ("markers" if len(STEP_MARKER.findall(response)) >= 2 else "blank")
    if resolved == "markers":
        assert bounds <= {m.start() for m in STEP_MARKER.finditer(response)}
        assert len(spans) == max(1, len(STEP_MARKER.findall(response)))  # text before the first joins step 0
    elif resolved == "blank":
        assert bounds <= {m.end() for m in BLANK_LINE.finditer(response)}
    else:
        assert bounds <= {m.end() for m in re.finditer(regex, response)}


@settings(max_examples=300)
@given(steps_sep=step_lists(), mode=st.sampled_from(["steps", "auto"]))
def test_steps_mode_reproduces_the_steps(steps_sep, mode):
    steps, sep = steps_sep
    response = sep.join(steps)
    spans = step_spans(response, steps, mode, separator=sep)
    assert_partition(spans, len(response))
    assert len(spans) == len(steps)
    for k, ((s, e), step) in enumerate(zip(spans, steps)):
        assert response[s:e] == step + (sep if k < len(steps) - 1 else "")  # the separator joins the step before


@settings(max_examples=40)
@given(steps_sep=step_lists(), extra=st.sampled_from(["x", " ", "\n"]))
def test_steps_mode_refuses_a_response_that_is_not_the_joined_steps(steps_sep, extra):
    steps, sep = steps_sep
    with pytest.raises(ValueError, match="not the steps joined"):
        step_spans(sep.join(steps) + extra, steps, "steps", separator=sep)


@st.composite
def split_responses(draw) -> tuple[str, list[tuple[int, int]]]:
    """A response and its spans, from any split mode (pre-split steps included)."""
    if draw(st.booleans()):
        steps, sep = draw(step_lists())
        response = sep.join(steps)
        return response, step_spans(response, steps, "steps", separator=sep)
    response = draw(responses())
    return response, step_spans(response, None, draw(st.sampled_from(MODES)), draw(st.sampled_from(REGEXES)))


@pytest.fixture(scope="module")
def encoders(smol_tokenizer):
    """Chat-template and plain encoders over the real tokenizer (prompt ids are cached per prompt)."""
    return {t: Encoder(smol_tokenizer, template=t, max_length=100_000) for t in ("chat", "plain")}


@settings(max_examples=300)
@given(split=split_responses(), prompt=texts, template=st.sampled_from(["chat", "plain"]))
def test_every_response_token_maps_to_one_step(encoders, smol_tokenizer, split, prompt, template):
    response, spans = split
    enc = encoders[template].encode(prompt, response, spans)
    ids = smol_tokenizer(response, add_special_tokens=False)["input_ids"]
    assert enc.response_ids == ids  # the response is tokenized once, whole
    assert len(enc.token_steps) == len(ids) and enc.n_steps == len(spans)
    assert all(0 <= k < enc.n_steps for k in enc.token_steps)
    assert enc.token_steps == sorted(enc.token_steps)  # non-decreasing
    offsets = smol_tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for k, (start, _) in zip(enc.token_steps, offsets):
        if start < len(response):  # the step whose span holds the token's first character
            assert spans[k][0] <= start < spans[k][1], (k, start, spans)


finite = st.floats(min_value=-60.0, max_value=0.0, allow_nan=False, width=64)


@st.composite
def token_data(draw):
    """(policy log-probs, reference log-probs or None, token steps, n_steps, beta) with sorted token steps."""
    n_steps = draw(st.integers(1, 8))
    n_tok = draw(st.integers(0, 40))
    tok_steps = sorted(draw(st.lists(st.integers(0, n_steps - 1), min_size=n_tok, max_size=n_tok)))
    policy = draw(st.lists(finite, min_size=n_tok, max_size=n_tok))
    ref = draw(st.none() | st.lists(finite, min_size=n_tok, max_size=n_tok))
    beta = draw(st.floats(min_value=1e-3, max_value=10.0))
    return policy, ref, tok_steps, n_steps, beta


def check_rewards(policy: list[float], ref: list[float] | None, tok_steps: list[int], n_steps: int, beta: float,
                  dtype=torch.float64) -> None:
    pol_t = torch.tensor(policy, dtype=dtype)
    ref_t = None if ref is None else torch.tensor(ref, dtype=dtype)
    tr = token_rewards(pol_t, ref_t, beta)
    want_tr = [beta * (p - (0.0 if ref is None else r)) for p, r in zip(policy, ref or [0.0] * len(policy))]
    tol = dict(rel=1e-9, abs=1e-9) if dtype == torch.float64 else dict(rel=1e-4, abs=5e-3)
    assert tr.tolist() == pytest.approx(want_tr, **tol)
    sr = step_rewards(tr, torch.tensor(tok_steps, dtype=torch.long), n_steps)
    assert sr.shape == (n_steps,)
    for k in range(n_steps):  # a step's reward is the sum of its tokens' rewards (0 for a step with none)
        assert sr[k].item() == pytest.approx(math.fsum(r for r, s in zip(want_tr, tok_steps) if s == k), **tol)
    q = q_values(sr)
    running = 0.0
    for k in range(n_steps):  # q-values are the running sum of the step rewards
        running += sr[k].item()
        assert q[k].item() == pytest.approx(running, **tol)
    total = math.fsum(want_tr)  # the outcome reward beta * log(pi_theta(y) / pi_ref(y))
    assert sr.sum().item() == pytest.approx(total, **tol)
    assert q[-1].item() == pytest.approx(total, **tol)
    agg = aggregate(sr.tolist())
    assert agg["sum"] == pytest.approx(q[-1].item(), **tol)
    assert agg["last"] == sr[-1].item() and agg["min"] == min(sr.tolist())
    assert agg["mean"] == pytest.approx(total / n_steps, **tol)


@settings(max_examples=200)
@given(data=token_data(), fp32=st.booleans())
def test_q_values_are_the_running_sum_of_step_rewards(data, fp32):
    check_rewards(*data, dtype=torch.float32 if fp32 else torch.float64)


@settings(max_examples=100)
@given(split=split_responses(), data=st.data())
def test_rewards_of_an_encoded_response(encoders, split, data):
    """The whole chain: split -> encode with the real tokenizer -> random log-probs -> step rewards and q-values."""
    response, spans = split
    enc = encoders["plain"].encode("Add 7 and 5.", response, spans)
    n = len(enc.response_ids)
    assume(n > 0)
    policy = data.draw(st.lists(finite, min_size=n, max_size=n), label="policy")
    ref = data.draw(st.none() | st.lists(finite, min_size=n, max_size=n), label="ref")
    check_rewards(policy, ref, enc.token_steps, enc.n_steps, beta=0.1)
