"""Rollout statistics (data.stats) against a small file counted by hand, and `implicit-prm data` writing them."""
import json

import pytest

from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.errors import InputError
from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts
from implicit_prm.data.stats import normalise_text, rollout_stats, stats_path

# 3 problems x 4 completions. Vote keys (vote_key of the extracted answer) in the comments.
HAND = [
    {"prompt": "A", "answer": 12,  # 4 correct; votes 12, 12, 12, 12
     "completions": ["3 + 9 = 12. The answer is 12.",
                     "3 + 9 = 12  the ANSWER is 12",  # = the first after normalising case/space/punctuation
                     "3 plus 9 is 12. \\boxed{12}",
                     "Adding 9 to 3 gives 12. So the final answer is 12."],
     "correctness": [True, True, True, True], "first_error": [-1, -1, -1, -1],
     "error_kind": [None, None, None, None]},
    {"prompt": "B", "answer": 5,  # 0 correct; votes 4, 4, -4, (none: no number in the text)
     "completions": ["10 - 6 = 4. The answer is 4.",
                     "Ten minus six is 4. The answer is 4.",
                     "6 - 10 = -4. The answer is -4.",
                     "I am not sure how to finish this."],
     "correctness": [False, False, False, False], "first_error": [0, 0, 0, 1],
     "error_kind": ["arithmetic_slip", "arithmetic_slip", "reversed_sub", "dropped_step"]},
    {"prompt": "C", "answer": 20,  # 3 correct; votes 9, 20, 20, 20
     "completions": ["4 + 5 = 9. The answer is 9.",
                     "4 * 5 = 20. The answer is 20.",
                     "4 * 5 = 20.\nThe answer is 20.\n",  # = the one before after normalising whitespace
                     "Four times five is 20, so the answer is 20."],
     "correctness": [False, True, True, True], "first_error": [0, -1, -1, -1],
     "error_kind": ["misread_op", None, None, None]},
]


def test_hand_counted_file():
    s = rollout_stats(HAND)
    assert s["n_problems"] == 3 and s["n_completions"] == 12 and s["samples_per_problem"] == 4
    assert s["balanced"] is False
    # fractions correct: A 4/4, B 0/4, C 3/4 -> (1 + 0 + 0.75) / 3
    assert s["pass@1"] == pytest.approx(1.75 / 3)
    # A and C have a correct completion, B has none
    assert s["pass@N"] == pytest.approx(2 / 3)
    # majorities: A 12 (4 votes, correct), B 4 (2 votes, wrong), C 20 (3 votes, correct)
    assert s["majority@N"] == pytest.approx(2 / 3)
    # B's last completion has no answer: 11 of 12 answered
    assert s["answered"] == pytest.approx(11 / 12)
    # distinct correct texts: A 3 (the first two normalise alike), C 2 (its 2nd and 3rd alike); B has no correct one
    assert s["distinct_correct"]["mean"] == pytest.approx(2.5) and s["distinct_correct"]["n_problems"] == 2
    # >= 3 correct: A (3 distinct: yes) and C (2 distinct: no) -> 1 of 2
    assert s["distinct_correct"]["share_ge3"] == pytest.approx(0.5)
    assert s["distinct_correct"]["n_problems_ge3_correct"] == 2
    # >= 2 wrong: only B (4 wrong); its most common wrong answer, 4, is given twice -> 1 of 1
    assert s["wrong_repeat"] == {"share": 1.0, "n_problems_ge2_wrong": 1}
    # error kinds of the 5 wrong completions; their first errors at step 0 (4 of them) and step 1 (B's last)
    assert s["error_kinds"] == {"arithmetic_slip": 2, "dropped_step": 1, "misread_op": 1, "reversed_sub": 1}
    assert s["first_error_steps"] == {"0": 4, "1": 1}


def test_ties_go_to_the_answer_seen_first_and_votes_use_the_normalised_key():
    recs = [  # "1,000" and "1000" are one answer: a 2-2 tie with 20, and 1000 comes first -> the majority is wrong
        {"completions": ["The answer is 1,000.", "The answer is 20.", "\\boxed{20}", "The answer is 1000"],
         "correctness": [False, True, True, False]},
        # the same tie with 20 first -> correct
        {"completions": ["The answer is 20.", "The answer is 7.", "The answer is 7.", "The answer is 20."],
         "correctness": [True, False, False, True]},
        # wrong answers 24 and 25 each once: the most common wrong answer does not repeat
        {"completions": ["The answer is 24.", "The answer is 25.", "The answer is 20.", "The answer is 20."],
         "correctness": [False, False, True, True]},
    ]
    s = rollout_stats(recs, balanced=True)
    assert s["majority@N"] == pytest.approx(2 / 3)
    assert s["wrong_repeat"] == {"share": pytest.approx(2 / 3), "n_problems_ge2_wrong": 3}
    assert s["balanced"] is True and s["error_kinds"] is None and s["first_error_steps"] is None
    assert s["distinct_correct"]["share_ge3"] is None  # no problem has 3 correct


def test_normalise_text():
    assert normalise_text("  Step 1: 3 + 9 = 12.\n\nThe ANSWER is 12!") == "step 1 3 + 9 = 12 the answer is 12"


@pytest.mark.parametrize("rec, field", [
    ({"completions": ["a", "b"], "correctness": [True]}, "correctness"),
    ({"completions": [], "correctness": []}, "completions"),
    ({"completions": ["a"], "correctness": [True], "error_kind": []}, "error_kind"),
])
def test_bad_records_are_named(rec, field):
    with pytest.raises(InputError) as e:
        rollout_stats([HAND[0], rec])
    assert e.value.line == 2 and e.value.field == field


def test_write_builtin_writes_and_prints_the_stats(tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    cfg = BuiltinDataConfig(output=str(out), n_problems=6, samples_per_problem=4, seed=2, version=2)
    write_builtin(cfg)
    saved = json.loads(stats_path(out).read_text(encoding="utf-8"))
    assert saved == rollout_stats(generate_rollouts(cfg), balanced=True)
    assert saved["error_kinds"] is not None  # version 2 writes error_kind
    assert "majority@4" in capsys.readouterr().out
    unbalanced = BuiltinDataConfig(output=str(out), n_problems=6, samples_per_problem=4, seed=2, balance=False)
    write_builtin(unbalanced)
    assert json.loads(stats_path(out).read_text(encoding="utf-8"))["balanced"] is False
