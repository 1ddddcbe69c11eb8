"""Hand-checked step boundaries for implicit_prm.steps.splitting: spans from starts, steps lists, markers, blank lines, regexes."""
import pytest

from implicit_prm.steps.splitting import spans_from_starts, spans_from_steps, step_spans


def pieces(text, spans):
    return [text[a:b] for a, b in spans]


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
    with pytest.raises(ValueError, match="needs a regex"):
        step_spans("a; b", mode="regex")
    with pytest.raises(ValueError, match="needs a regex"):
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
