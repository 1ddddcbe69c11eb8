"""Hand-checked numbers for the pure reward maths in implicit_prm.rewards: token->step, rewards, q-values, scores."""
import pytest
import torch

from implicit_prm.rewards import aggregate, q_values, step_rewards, token_rewards, token_steps
from implicit_prm.steps.splitting import step_spans


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)

# ---------------------------------------------------------------- token -> step


def test_token_steps_first_character_rule():
    spans = [(0, 4), (4, 9), (9, 10)]
    # token starts 0, 2 -> step 0; 4, 5 -> step 1; 9 -> step 2
    assert token_steps([(0, 2), (2, 4), (4, 5), (5, 9), (9, 10)], spans) == [0, 0, 1, 1, 2]
    # a token crossing a boundary (3..6) goes to the step of its first character (step 0)
    assert token_steps([(0, 3), (3, 6), (6, 10)], spans) == [0, 0, 1]
    # byte-level pieces of one character share its offsets -> same step
    assert token_steps([(4, 5), (4, 5), (4, 5)], spans) == [1, 1, 1]
    # past the last span -> last step
    assert token_steps([(12, 13)], spans) == [2]
    # a step that no token starts in gets no token: tokens (0..6), (6..10) -> steps [0, 1]
    assert token_steps([(0, 6), (6, 10)], spans) == [0, 1]


# ---------------------------------------------------------------- rewards, q-values, scores


def test_token_rewards():
    # beta 0.5 * ([-1, -2, -0.5] - [-1.5, -1, -0.5]) = 0.5 * [0.5, -1, 0] = [0.25, -0.5, 0]
    pol, ref = t(-1.0, -2.0, -0.5), t(-1.5, -1.0, -0.5)
    assert token_rewards(pol, ref, 0.5).tolist() == [0.25, -0.5, 0.0]
    # reference-free: beta * log pi = [-0.5, -1, -0.25]
    assert token_rewards(pol, None, 0.5).tolist() == [-0.5, -1.0, -0.25]


def test_step_rewards_sum_by_step_and_empty_step_is_zero():
    # tokens [0.5, -1.25 | -, | 0.25, 2.0 | -]: step 0 = -0.75, step 1 = 0 (no token), step 2 = 2.25, step 3 = 0
    tok_r = t(0.5, -1.25, 0.25, 2.0)
    out = step_rewards(tok_r, torch.tensor([0, 0, 2, 2]), 4)
    assert out.tolist() == [-0.75, 0.0, 2.25, 0.0]
    assert out.dtype == torch.float64
    # the order of the tokens does not matter: steps [2, 0, 2, 0] -> step 0 = -1.25 + 2.0, step 2 = 0.5 + 0.25
    assert step_rewards(tok_r, torch.tensor([2, 0, 2, 0]), 3).tolist() == [0.75, 0.0, 0.75]


def test_q_values_running_sum():
    # [-0.75, 0, 2.25, 0] -> [-0.75, -0.75, 1.5, 1.5]
    assert q_values(t(-0.75, 0.0, 2.25, 0.0)).tolist() == [-0.75, -0.75, 1.5, 1.5]
    assert q_values(t(0.5)).tolist() == [0.5]


def test_aggregate():
    # min -0.75, last 0, sum 1.5 (== last q-value), mean 1.5 / 4 = 0.375
    step_r = [-0.75, 0.0, 2.25, 0.0]
    assert aggregate(step_r) == {"min": -0.75, "last": 0.0, "sum": 1.5, "mean": 0.375}
    assert aggregate(step_r)["sum"] == q_values(torch.tensor(step_r, dtype=torch.float64))[-1].item()
    assert aggregate([0.5]) == {"min": 0.5, "last": 0.5, "sum": 0.5, "mean": 0.5}


def test_aggregate_by_scale_keeps_each_scales_scores_and_order():
    # a reward model's logits at each step end: last is its card's score; keys in the order records write them
    got = aggregate([1.0, -2.0, 4.0], "logit")
    assert list(got) == ["last", "min", "mean"] and got == {"last": 4.0, "min": -2.0, "mean": 1.0}
    # probabilities: prod 0.5 * 0.4 = 0.2, never a sum (a sum of probabilities is not a score)
    got = aggregate([0.5, 0.4], "probability")
    assert list(got) == ["min", "last", "prod", "mean"] and got == pytest.approx(
        {"min": 0.4, "last": 0.4, "prod": 0.2, "mean": 0.45})
    assert list(aggregate([1.0, 2.0])) == ["min", "last", "sum", "mean"]
    with pytest.raises(ValueError, match="unknown scale"):
        aggregate([1.0], "odds")


def test_pipeline_by_hand():
    """Offsets -> steps -> rewards for "ab\\n\\ncd" split by blank line, beta 0.1.

    tokens "ab" (0,2), "\\n\\n" (2,4), "cd" (4,6); spans [(0,4), (4,6)] -> steps [0, 0, 1]
    logp - logp_ref = [1, 2, -4] -> token rewards [0.1, 0.2, -0.4] -> steps [0.3, -0.4] -> q [0.3, -0.1]
    """
    spans = step_spans("ab\n\ncd", mode="blank")
    steps = token_steps([(0, 2), (2, 4), (4, 6)], spans)
    assert steps == [0, 0, 1]
    tok_r = token_rewards(t(-1.0, -1.0, -5.0), t(-2.0, -3.0, -1.0), 0.1)
    step_r = step_rewards(tok_r, torch.tensor(steps), len(spans))
    assert step_r.tolist() == pytest.approx([0.3, -0.4], abs=1e-12)
    assert q_values(step_r).tolist() == pytest.approx([0.3, -0.1], abs=1e-12)
    assert aggregate(step_r.tolist()) == pytest.approx({"min": -0.4, "last": -0.4, "sum": -0.1, "mean": -0.05})
