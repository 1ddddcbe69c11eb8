"""Hand-checked numbers for the pure reward maths in implicit_prm.rewards: step spans, token->step, rewards, scores."""
import pytest
import torch

from implicit_prm.rewards import (
    aggregate,
    q_values,
    spans_from_starts,
    spans_from_steps,
    step_rewards,
    step_spans,
    token_rewards,
    token_steps,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def pieces(text, spans):
    return [text[s:e] for s, e in spans]


# ---------------------------------------------------------------- spans from starts / steps


def test_spans_from_starts_cover_the_text():
    # bounds [0, 3, 7, 10] -> three consecutive spans
    assert spans_from_starts([3, 7], 10) == [(0, 3), (3, 7), (7, 10)]
    # unsorted, duplicated, 0 and out-of-range starts are dropped: still bounds [0, 3, 7, 10]
    assert spans_from_starts([7, 3, 3, 0, 10, 12, -1], 10) == [(0, 3), (3, 7), (7, 10)]
    # no start -> one step; text before the first start (here [0, 4)) joins step 0
    assert spans_from_starts([], 5) == [(0, 5)]
    assert spans_from_starts([4], 9) == [(0, 4), (4, 9)]


def test_spans_from_steps_separator_belongs_to_the_step_before():
    # "ab\n\ncde\n\nf": ab (0-1) + sep (2-3) | cde (4-6) + sep (7-8) | f (9); length 10
    steps = ["ab", "cde", "f"]
    assert spans_from_steps(steps, "\n\n") == [(0, 4), (4, 9), (9, 10)]
    assert pieces("\n\n".join(steps), spans_from_steps(steps, "\n\n")) == ["ab\n\n", "cde\n\n", "f"]
    # empty separator: lengths 2, 3, 1 -> bounds 0, 2, 5, 6
    assert spans_from_steps(steps, "") == [(0, 2), (2, 5), (5, 6)]
    # one step: the whole text, no separator
    assert spans_from_steps(["only"], "\n\n") == [(0, 4)]


# ---------------------------------------------------------------- step_spans, each mode


def test_steps_mode():
    steps = ["x = 1", "y = 2"]
    response = "\n\n".join(steps)  # "x = 1\n\ny = 2", 5 + 2 + 5 = 12 chars
    assert step_spans(response, steps, mode="steps") == [(0, 7), (7, 12)]
    # a custom separator: "x = 1 | y = 2" -> "x = 1 | " is 8 chars
    assert step_spans("x = 1 | y = 2", steps, mode="steps", separator=" | ") == [(0, 8), (8, 13)]
    # auto mode uses the steps list whenever one is given, even if the text has blank lines inside a step
    steps = ["a\n\nb", "c"]
    assert step_spans("a\n\nb\n\nc", steps) == [(0, 6), (6, 7)]


def test_steps_mode_errors():
    with pytest.raises(ValueError, match="needs a 'steps' list"):
        step_spans("a\n\nb", None, mode="steps")
    with pytest.raises(ValueError, match="not the steps joined"):
        step_spans("a\nb", ["a", "b"], mode="steps")  # joined with "\n\n" it would be "a\n\nb"
    with pytest.raises(ValueError, match="not the steps joined"):
        step_spans("a\n\nb", ["a", "b"], mode="steps", separator="\n")


def test_markers_mode_text_before_the_first_marker_joins_step_0():
    # "Intro.\n" = 7 chars (0..6), "Step 1: a\n" = 10 chars (7..16), "Step 2: b" = 9 chars (17..25); length 26
    # the intro joins the first marked step: 2 markers -> 2 steps
    response = "Intro.\nStep 1: a\nStep 2: b"
    spans = step_spans(response, mode="markers")
    assert spans == [(0, 17), (17, 26)]
    assert pieces(response, spans) == ["Intro.\nStep 1: a\n", "Step 2: b"]


def test_markers_mode_split_points():
    # whatever happens to the intro, the second marker's line (17..25) is the last step and the intro is in the first
    response = "Intro.\nStep 1: a\nStep 2: b"
    spans = step_spans(response, mode="markers")
    assert spans[0][0] == 0 and spans[-1] == (17, 26)


def test_markers_mode_forms():
    # "Step 2." with a dot and an indented marker: the step starts at the start of its line (indent included)
    response = "Step 1: x\n  Step 2. y"  # "Step 1: x\n" = 10 chars; total 21
    assert step_spans(response, mode="markers") == [(0, 10), (10, 21)]
    # "Step 10:" and "Step3:" (no space) are markers; "see Step 4:" mid-line is not
    response = "Step 1: a, see Step 4: later\nStep3: b\nStep 10: c"
    spans = step_spans(response, mode="markers")
    assert pieces(response, spans) == ["Step 1: a, see Step 4: later\n", "Step3: b\n", "Step 10: c"]
    # one marker at the very start: one step
    assert step_spans("Step 1: only", mode="markers") == [(0, 12)]


def test_blank_mode():
    # "a\n\nb": the blank line "\n\n" (1..2) ends step 0 -> bounds 0, 3, 4
    assert step_spans("a\n\nb", mode="blank") == [(0, 3), (3, 4)]
    # "\n\n\n" is one separator, not two steps: bounds 0, 4, 5
    assert step_spans("a\n\n\nb", mode="blank") == [(0, 4), (4, 5)]
    # a whitespace-only line counts as blank: "a\n  \nb" -> separator "\n  \n" (1..4) -> bounds 0, 5, 6
    assert step_spans("a\n  \nb", mode="blank") == [(0, 5), (5, 6)]
    # "\n\t\n\n" (1..4) is one separator (a tab-only line, then an extra newline) -> bounds 0, 5, 6
    assert step_spans("a\n\t\n\nb", mode="blank") == [(0, 5), (5, 6)]
    # a single newline does not split
    assert step_spans("a\nb", mode="blank") == [(0, 3)]
    # a blank line at the very start or end does not make an empty step
    assert step_spans("\n\na\n\nb", mode="blank") == [(0, 5), (5, 6)]
    assert step_spans("a\n\nb\n\n", mode="blank") == [(0, 3), (3, 6)]
    # three steps
    response = "one\n\ntwo\n\n\nthree"
    assert pieces(response, step_spans(response, mode="blank")) == ["one\n\n", "two\n\n\n", "three"]


def test_blank_mode_crlf():
    assert len(step_spans("a\r\n\r\nb", mode="blank")) == 2


def test_regex_mode():
    # r";\s*" matches ";" + " " at 1..2 and 4..5; each match ends a step -> bounds 0, 3, 6, 7
    response = "a; b; c"
    assert step_spans(response, mode="regex", regex=r";\s*") == [(0, 3), (3, 6), (6, 7)]
    # a zero-width lookahead starts a step at each "Step" (the one at position 0 is no boundary)
    response = "Step 1 ok. Step 2 ok."  # second "Step" at 11
    assert step_spans(response, mode="regex", regex=r"(?=Step)") == [(0, 11), (11, 21)]
    # a match at the very end does not make an empty last step
    assert step_spans("a;b;", mode="regex", regex=";") == [(0, 2), (2, 4)]
    # a split in the middle of a word: "hello" (3..7) ends step 0 -> bounds 0, 8, 13
    assert step_spans("sayhelloworld", mode="regex", regex="hello") == [(0, 8), (8, 13)]
    # a match that starts at position 0 is taken for a leading separator and makes no boundary
    assert step_spans("helloworld", mode="regex", regex="hello") == [(0, 10)]


def test_regex_and_mode_errors():
    with pytest.raises(ValueError, match="needs --step-regex"):
        step_spans("a; b", mode="regex")
    with pytest.raises(ValueError, match="needs --step-regex"):
        step_spans("a; b", mode="regex", regex="")
    with pytest.raises(ValueError, match="unknown step split mode"):
        step_spans("a", mode="sentences")


def test_auto_mode_choice():
    # "Step 1: a\n" (0..9), "Step 2: b" (10..18), "\n\n" (19..20), "so the answer is b" (21..38); length 39
    response = "Step 1: a\nStep 2: b\n\nso the answer is b"
    assert step_spans(response, mode="markers") == [(0, 10), (10, 39)]
    assert step_spans(response, mode="blank") == [(0, 21), (21, 39)]
    assert step_spans(response) == [(0, 10), (10, 39)]  # two markers -> markers
    # one marker only -> blank lines: "Step 1: a\n\n" (0..10) | "b"
    assert step_spans("Step 1: a\n\nb") == [(0, 11), (11, 12)]
    # no marker and no blank line -> one step
    assert step_spans("just one line") == [(0, 13)]


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
