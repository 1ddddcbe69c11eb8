"""Best-of-N evaluation on hand-worked problems: top-1, majority, weighted votes, pass@N, random, subsets, bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from implicit_prm.core.errors import ConfigError, InputError
from implicit_prm.eval.bon import SCHEMA, BonConfig, Votes, read_responses, run_bon
from implicit_prm.eval.scored import merge_scored, score_once

# (problem, answer, correct, min score), 4 samples each, in file order.
#   A: "5" F 1.5 | "7" T 1.5 | "7" T -1.0 | "7" T -2.0   (a top-score tie between 0 and 1; a 1-1 vote tie at N=2)
#   B: "1" F 0.0 | "2" F 2.0 | "1" F 1.0  | null F 5.0   (every sample wrong)
#   C: null T 0.0 | null F 1.0 | null T -2.0 | null T 2.0 (no sample has an answer)
ROWS = [("A", "5", False, 1.5), ("A", "7", True, 1.5), ("A", "7", True, -1.0), ("A", "7", True, -2.0),
        ("B", "1", False, 0.0), ("B", "2", False, 2.0), ("B", "1", False, 1.0), ("B", None, False, 5.0),
        ("C", None, True, 0.0), ("C", None, False, 1.0), ("C", None, True, -2.0), ("C", None, True, 2.0)]

# Worked by hand, subsets "first" (the first N responses of each problem), accuracy = mean over A, B, C:
# prm.min (top-1; ties -> earliest):
#   N=1: A {0} F, B F, C {0} T                               -> 1/3
#   N=2: A 1.5 = 1.5 -> idx 0 F; B F; C idx 1 (1.0) F        -> 0
#   N=4: A idx 0 (tie with 1) F; B F; C idx 3 (2.0) T        -> 1/3
# majority (null answers don't vote; tie -> first in subset; no answer -> wrong):
#   N=1: A "5" F; B "1" F; C none F                           -> 0
#   N=2: A "5":1 vs "7":1 tie -> "5" F; B F; C F              -> 0
#   N=4: A "7":3 vs "5":1 -> "7" T; B F; C F                  -> 1/3
# weighted_majority.prm.min (sum of sigmoid):
#   N=2: A s(1.5) = s(1.5) = 0.8176 tie -> "5" F              -> 0
#   N=4: A "7": s(1.5)+s(-1)+s(-2) = 0.8176+0.2689+0.1192 = 1.2057 > "5": 0.8176 -> T   -> 1/3
# weighted_majority_raw.prm.min (raw sum) is not offered: these are log-ratios (no reward_schema). It would pick the
#   minority answer: N=4: A "7" (3 votes): 1.5-1-2 = -1.5 < "5" (1 vote): 1.5 -> "5" F  (test_raw_vote_...)
# pass@N: N=1: C -> 1/3; N=2: A, C -> 2/3; N=4: A, C -> 2/3
# random (mean correctness): N=1: (0 + 0 + 1)/3 = 1/3; N=2: (0.5 + 0 + 0.5)/3 = 1/3; N=4: (0.75 + 0 + 0.75)/3 = 1/2
EXPECTED_FIRST = {
    "prm.min": [1 / 3, 0, 1 / 3],
    "majority": [0, 0, 1 / 3],
    "weighted_majority.prm.min": [0, 0, 1 / 3],
    "pass@N": [1 / 3, 2 / 3, 2 / 3],
    "random": [1 / 3, 1 / 3, 1 / 2],
}


def records(rows=ROWS, scores=None):
    """Responses without digits or an answer sentence, so a null `extracted_answer` casts no vote."""
    out = []
    for i, (pid, ans, ok, s) in enumerate(rows):
        out.append({"problem_id": pid, "response": f"response {chr(97 + i)}", "extracted_answer": ans, "correct": ok,
                    "scores": {"min": s} if scores is None else scores(s)})
    return out


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def run(tmp_path, recs, **kw):
    path = write(tmp_path / "resp.jsonl", recs)
    return run_bon(BonConfig(input=path, **kw))


def test_first_subsets_hand_worked(tmp_path):
    res = run(tmp_path, records(), subsets="first", ns=[1, 2, 4])
    assert res["ns"] == [1, 2, 4]
    for method, acc in EXPECTED_FIRST.items():
        assert res["methods"][method]["acc"] == pytest.approx(acc), method
        assert res["methods"][method]["std"] == [0, 0, 0]
    assert set(res["methods"]) == set(EXPECTED_FIRST)


def test_paired_difference_with_majority_hand_worked(tmp_path):
    # per problem (A, B, C), prm.min minus majority from the table above: N=1 (0, 0, 1) -> 1/3; N=2 (0, 0, 0) -> 0;
    # N=4 (-1, 0, 1) -> 0. Bootstrap of 3 problems: every resample of N=2 is 0; at N=4 a resample of A alone
    # (mean -1) has chance 1/27 = 3.7% > 2.5%, so the 95% interval reaches -1, and C alone reaches +1.
    res = run(tmp_path, records(), subsets="first", ns=[1, 2, 4], n_bootstrap=2000)
    d = res["methods"]["prm.min"]["minus_majority"]
    assert d["diff"] == pytest.approx([1 / 3, 0, 0])
    assert d["ci"][1] == [0, 0] and d["ci"][2] == pytest.approx([-1, 1]) and d["ci"][0] == pytest.approx([0, 1])
    assert res["methods"]["pass@N"]["minus_majority"]["diff"] == pytest.approx([1 / 3, 2 / 3, 1 / 3])
    assert "minus_majority" not in res["methods"]["majority"]
    unboot = run(tmp_path, records(), subsets="first", ns=[1, 2, 4], n_bootstrap=0)
    assert unboot["methods"]["prm.min"]["minus_majority"]["ci"] is None


def test_outputs_schema_plot_and_config(tmp_path, capsys):
    res = run(tmp_path, records(), subsets="first")
    assert res["ns"] == [1, 2, 4]  # default: powers of two up to the sample count
    on_disk = json.loads((tmp_path / "resp.bon.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in ("schema", "input", "n_problems", "samples_per_problem", "subsets", "n_subsets", "seed", "ns",
                "methods", "tie_rule"):
        assert key in on_disk
    assert on_disk["schema"] == SCHEMA
    assert (on_disk["n_problems"], on_disk["samples_per_problem"], on_disk["truncated"]) == (3, 4, None)
    assert on_disk["answered"] == pytest.approx(7 / 12)  # A 4, B 3, C 0
    assert (tmp_path / "resp.bon.png").stat().st_size > 1000
    cfg = json.loads((tmp_path / "resp.bon.json.config.json").read_text())
    assert cfg["command"] == "BonConfig" and cfg["ns"] == [1, 2, 4]
    table = capsys.readouterr().out
    assert "N=4" in table and "weighted_majority_raw.prm.min" not in table  # log-ratios: no raw-sum row, a note
    assert "weighted_majority_raw is left out for prm.min (log_ratio)" in table
    assert on_disk["weighted_majority_raw_left_out"] == {"prm.min": "log_ratio"}


def test_random_subsets_full_set_equals_first(tmp_path):
    first = run(tmp_path, records(), subsets="first", ns=[4])
    rand = run(tmp_path, records(), subsets="random", ns=[4], n_subsets=7)
    assert rand["methods"] == first["methods"]


def test_random_subsets_n1_approaches_mean_correctness(tmp_path):
    res = run(tmp_path, records(), ns=[1], n_subsets=2000, seed=0)
    m = res["methods"]
    # one response per subset: top-1, pass@1 and random all score that response, in every draw
    assert m["prm.min"]["acc"] == m["pass@N"]["acc"] == m["random"]["acc"]
    assert m["prm.min"]["acc"][0] == pytest.approx(0.5, abs=0.03)  # mean correctness (0.75 + 0 + 0.75) / 3
    assert m["prm.min"]["std"][0] > 0


def test_random_subsets_fixed_seed_exact(tmp_path):
    a = run(tmp_path, records(), ns=[1, 2], n_subsets=10, seed=3)
    b = run(tmp_path, records(), ns=[1, 2], n_subsets=10, seed=3)
    assert a["methods"] == b["methods"]
    m = a["methods"]
    # seed 3, 10 draws: 13 of the 30 (draw, problem) picks at N=1 are correct (a regression value of the seed)
    assert m["random"]["acc"][0] == pytest.approx(13 / 30)
    assert m["random"]["acc"][1] == pytest.approx(14 / 30)
    assert m["majority"]["acc"][1] == pytest.approx(2 / 30)
    # exact whatever the draw: every pair from A or C holds a correct response, none from B
    assert m["pass@N"]["acc"][1] == pytest.approx(2 / 3) and m["pass@N"]["std"][1] == pytest.approx(0, abs=1e-12)
    c = run(tmp_path, records(), ns=[1, 2], n_subsets=10, seed=4)
    assert c["methods"] != a["methods"]


def test_n_larger_than_samples(tmp_path):
    with pytest.raises(ConfigError, match="larger than the 4 samples"):
        run(tmp_path, records(), ns=[2, 8])


def test_ragged_error_and_truncate(tmp_path):
    recs = records()[:-1]  # C loses its last sample: 4, 4, 3
    with pytest.raises(InputError, match=r"resp\.jsonl:9: field 'problem_id'.*'C' has 3 responses"):
        run(tmp_path, recs)
    res = run(tmp_path, recs, ragged="truncate", subsets="first")
    assert res["samples_per_problem"] == 3 and res["ns"] == [1, 2, 3]
    assert res["truncated"] == {"min_count": 3, "max_count": 4, "samples_per_problem": 3}
    # N=3: A F,T,T -> 2/3; B 0; C T,F,T -> 2/3
    assert res["methods"]["random"]["acc"][-1] == pytest.approx(4 / 9)


def test_nan_score_names_the_line(tmp_path):
    recs = records()
    recs[4]["scores"] = {"min": float("nan")}
    with pytest.raises(InputError, match=r"resp\.jsonl:5: field 'scores\.min'.*finite number"):
        run(tmp_path, recs)


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.pop("scores"), r":2: field 'scores': missing"),
    (lambda r: r.pop("correct"), r":2: field 'correct': missing"),
    (lambda r: r.update(scores={"min": 1.0, "last": 2.0}), r":2: field 'scores'.*adds \['prm.last'\]"),
    (lambda r: r.update(scores={"min": "high"}), r":2: field 'scores.min'"),
])
def test_bad_records(tmp_path, edit, match):
    recs = records()
    edit(recs[1])
    with pytest.raises(InputError, match=match):
        run(tmp_path, recs)


def test_nested_scores_methods(tmp_path):
    recs = records(scores=lambda s: {"prm": {"min": s, "last": -s}, "orm": {"sum": 2 * s}})
    res = run(tmp_path, recs, subsets="first", ns=[4])
    assert res["score_methods"] == ["prm.min", "prm.last", "orm.sum"]
    for m in res["score_methods"]:
        for prefix in ("", "weighted_majority."):
            assert prefix + m in res["methods"]
        assert "weighted_majority_raw." + m not in res["methods"]  # log-ratios: no raw sum
    # orm.sum = 2 * min ranks like prm.min; prm.last = -min: N=4 picks A idx 3 (T), B idx 0 (F), C idx 2 (T)
    assert res["methods"]["orm.sum"]["acc"] == pytest.approx(EXPECTED_FIRST["prm.min"][-1:])
    assert res["methods"]["prm.last"]["acc"] == pytest.approx([2 / 3])


def test_builtin_answers_and_rollout_correctness(tmp_path):
    recs = [{"prompt": "p", "response": "Step 1: 2 + 3 = 5. The answer is 5.", "correctness": True,
             "scores": {"min": 0.1}},
            {"prompt": "p", "response": "Step 1: 2 + 3 = 6. The answer is -6.", "correctness": False,
             "scores": {"min": 0.2}},
            {"prompt": "p", "response": "no final sentence", "correctness": False, "scores": {"min": 0.3}}]
    data = read_responses(write(tmp_path / "b.jsonl", recs))
    assert data.answers.tolist() == [[0, 1, -1]] and data.correct.tolist() == [[True, False, False]]
    assert not math.isnan(data.scores.sum())


def test_merge_scored_nests_sources_for_bon(tmp_path):
    a = write(tmp_path / "a.jsonl", records())
    b = write(tmp_path / "b.jsonl", records(scores=lambda s: {"min": -s, "last": s}))
    both = merge_scored({"ours": a, "base": b}, tmp_path / "both.jsonl")
    merged = [json.loads(line) for line in both.read_text().splitlines()]
    assert merged[0]["scores"] == {"ours": {"min": 1.5}, "base": {"min": -1.5, "last": 1.5}}
    assert [{k: v for k, v in r.items() if k != "scores"} for r in merged] == \
        [{k: v for k, v in r.items() if k != "scores"} for r in records()]
    data = read_responses(both)
    assert data.methods == ["ours.min", "base.min", "base.last"]


def test_merge_scored_refuses_misaligned_files(tmp_path):
    a = write(tmp_path / "a.jsonl", records())
    swapped = records()
    swapped[2]["response"], swapped[3]["response"] = swapped[3]["response"], swapped[2]["response"]
    b = write(tmp_path / "b.jsonl", swapped)
    with pytest.raises(InputError, match=r"b\.jsonl:3: field 'response': differs from .*a\.jsonl:3; the scored "
                                         r"files are not aligned"):
        merge_scored({"a": a, "b": b}, tmp_path / "both.jsonl")
    short = write(tmp_path / "short.jsonl", records()[:-1])
    with pytest.raises(InputError, match=r"short\.jsonl: has 11 records but .*a\.jsonl has 12"):
        merge_scored({"a": a, "short": short}, tmp_path / "both.jsonl")
    unscored = records()
    del unscored[4]["scores"]
    c = write(tmp_path / "c.jsonl", unscored)
    with pytest.raises(InputError, match=r"c\.jsonl:5: field 'scores': missing"):
        merge_scored({"a": a, "c": c}, tmp_path / "both.jsonl")
    assert not (tmp_path / "both.jsonl").exists()


def test_score_once_keeps_a_finished_output(tmp_path):
    out = tmp_path / "s.jsonl"
    out.write_text("{}\n")
    (tmp_path / "s.jsonl.config.json").write_text("{}")
    assert score_once("no-such-model", tmp_path / "in.jsonl", out, dtype="fp32") == out  # scores nothing


# ----------------------------------------------------------------------------- answers read from the response text

def test_answer_from_varied_final_sentences(tmp_path):
    texts = ["Step 1: 5 + 7 = 12.\n\nThe answer is 12.", "5 + 7 = 12. So the final answer is $12$.",
             "Adding: \\boxed{12}", "Therefore, 12 apples.", "5 + 7 = 13. The answer is 13.", "I do not know."]
    recs = [{"prompt": "What is 5 + 7?", "response": t, "correct": "12" in t, "scores": {"min": 0.0}} for t in texts]
    data = read_responses(write(tmp_path / "v.jsonl", recs))
    assert data.answers.tolist() == [[0, 0, 0, 0, 1, -1]]  # four ways to say 12 vote together; no answer: no vote
    assert data.n_extracted == 5
    res = run(tmp_path, recs, subsets="first", ns=[6])
    assert res["methods"]["majority"]["acc"] == [1.0]
    assert res["n_answers_extracted"] == 5 and res["answered"] == pytest.approx(5 / 6)


def test_extracted_answer_field_comes_first(tmp_path):
    recs = [{"prompt": "p", "response": "The answer is 12.", "extracted_answer": "7", "correct": False,
             "scores": {"min": 0.0}},
            {"prompt": "p", "response": "The answer is 7.", "extracted_answer": None, "correct": False,
             "scores": {"min": 0.0}},  # null: read from the text
            {"prompt": "p", "response": "The answer is 12.", "answer_pred": " 12 ", "correct": True,
             "scores": {"min": 0.0}}]
    data = read_responses(write(tmp_path / "f.jsonl", recs))
    assert data.answers.tolist() == [[0, 0, 1]] and data.n_extracted == 1


def test_normalised_answers_vote_together(tmp_path):
    # one problem, 5 responses: 1000 three ways vs 999 twice; as raw strings 999 (2 votes) would win
    texts = [("\\boxed{1,000}", True), ("#### 999", False), ("The answer is 1000.", True), ("So 999.", False),
             ("The answer is $1000.0$.", True)]
    recs = [{"prompt": "What is 10^3?", "response": t, "correct": ok, "scores": {"min": 0.0}} for t, ok in texts]
    data = read_responses(write(tmp_path / "n.jsonl", recs))
    assert data.answers.tolist() == [[0, 1, 0, 1, 0]]
    assert run(tmp_path, recs, subsets="first", ns=[5])["methods"]["majority"]["acc"] == [1.0]
    # the field is normalised the same way; fractions in one form
    fields = ["1,000", "1000", "\\frac12", "0.5", "\\dfrac{1}{2}", "1/2", "Evelyn", "evelyn"]
    recs = [{"prompt": "p", "response": "", "extracted_answer": a, "correct": True, "scores": {"min": 0.0}}
            for a in fields]
    assert read_responses(write(tmp_path / "k.jsonl", recs)).answers.tolist() == [[0, 0, 1, 1, 1, 1, 2, 2]]


def test_presplit_steps_answer(tmp_path):
    recs = [{"problem": "q", "steps": ["Step 1: 2 * 3 = 6.", "The answer is 6."], "final_answer_correct": True,
             "scores": {"min": 0.5}},
            {"problem": "q", "steps": ["Step 1: 2 * 3 = 5.", "So we get \\boxed{5}."], "final_answer_correct": False,
             "scores": {"min": 0.1}}]
    data = read_responses(write(tmp_path / "s.jsonl", recs))
    assert data.answers.tolist() == [[0, 1]] and data.n_extracted == 2


# The paper's rollout format, flattened per completion as `implicit-prm score` writes it (the input record's fields
# for that completion, `correctness` one value, plus `scores`). No `extracted_answer`: answers come from the text.
#   P1 (5 + 7): c0 "12" T 0.2 | c1 "13" F 0.9 | c2 "12" T 0.1 | c3 none F 0.5
#   P2 (10 * 100): c0 "100" F 2.0 | c1 "1,000" T -1.0 | c2 "1000" T -0.5 | c3 "1000" T 1.0
ROLLOUTS = [
    {"prompt": "What is 5 + 7?",
     "completions": ["5 + 7 = 12. The answer is 12.", "5 + 7 = 13. So the final answer is $13$.",
                     "Adding gives \\boxed{12}", "I am not sure."],
     "correctness": [True, False, True, False], "min": [0.2, 0.9, 0.1, 0.5]},
    {"prompt": "What is 10 * 100?",
     "completions": ["#### 100", "Answer: 1,000", "Therefore, 1000 apples.", "The answer is 1000."],
     "correctness": [False, True, True, True], "min": [2.0, -1.0, -0.5, 1.0]},
]
# Worked by hand, subsets "first", accuracy = mean over P1, P2:
# majority (no answer: no vote; tie -> first in subset):
#   N=1: P1 "12" T; P2 "100" F                                    -> 1/2
#   N=2: P1 "12":1 vs "13":1 -> "12" T; P2 "100":1 vs "1000":1 -> "100" F   -> 1/2
#   N=4: P1 "12":2 T; P2 "1000":3 (1,000 = 1000) vs "100":1 T      -> 1
# weighted_majority.prm.min (sum of sigmoid):
#   N=2: P1 "12" s(.2) = .550 < "13" s(.9) = .711 F; P2 "1000" s(-1) = .269 < "100" s(2) = .881 F   -> 0
#   N=4: P1 "12" .550 + .525 = 1.075 > .711 T; P2 "1000" .269 + .378 + .731 = 1.378 > .881 T      -> 1
# weighted_majority_raw.prm.min is not offered (log-ratios); it would pick the minority answer in both problems:
#   N=4: P1 .2 + .1 = .3 < .9 F; P2 -1 - .5 + 1 = -.5 < 2 F   -> 0
# prm.min (top-1): N=1: P1 T, P2 F -> 1/2; N=2 and 4: P1 c1 (.9) F, P2 c0 (2.0) F -> 0
# random: N=1: (1 + 0)/2; N=2: (1/2 + 1/2)/2; N=4: (2/4 + 3/4)/2 = 5/8
EXPECTED_ROLLOUTS = {
    "majority": [1 / 2, 1 / 2, 1],
    "weighted_majority.prm.min": [1 / 2, 0, 1],
    "prm.min": [1 / 2, 0, 0],
    "pass@N": [1 / 2, 1, 1],
    "random": [1 / 2, 1 / 2, 5 / 8],
}


def scored_rollouts(tmp_path):
    from implicit_prm.data import read_samples

    src = write(tmp_path / "rollouts.jsonl", [{k: v for k, v in r.items() if k != "min"} for r in ROLLOUTS])
    mins = [m for r in ROLLOUTS for m in r["min"]]
    return [{**s.record, "scores": {"min": m}} for s, m in zip(read_samples(src), mins)]


def test_paper_rollout_format_majority_hand_worked(tmp_path):
    recs = scored_rollouts(tmp_path)
    assert set(recs[0]) == {"prompt", "response", "correctness", "completion_index", "scores"}
    res = run(tmp_path, recs, subsets="first", ns=[1, 2, 4])
    for method, acc in EXPECTED_ROLLOUTS.items():
        assert res["methods"][method]["acc"] == pytest.approx(acc), method
    assert res["n_answers_extracted"] == 7 and res["answered"] == pytest.approx(7 / 8)
    # `correct` instead of `correctness` reads the same
    renamed = [{("correct" if k == "correctness" else k): v for k, v in r.items()} for r in recs]
    assert run(tmp_path, renamed, subsets="first", ns=[1, 2, 4])["methods"] == res["methods"]


def test_no_answer_anywhere_refused(tmp_path):
    recs = [{"prompt": p, "response": "I cannot tell.", "correct": False, "scores": {"min": 0.0}}
            for p in ("a", "a", "b", "b")]
    recs[0]["extracted_answer"] = None
    path = write(tmp_path / "none.jsonl", recs)
    with pytest.raises(InputError, match=r"none\.jsonl: field 'extracted_answer': no response has a final answer.*"
                                         r"implicit-prm grade --input .*none\.jsonl .*--reference-field answer"):
        read_responses(path)
    with pytest.raises(InputError, match="no response has a final answer"):
        run_bon(BonConfig(input=path))
    assert not (tmp_path / "none.bon.json").exists()
    # one answer in the whole file is enough: the other problem's responses cast no vote
    recs[3]["response"] = "The answer is 4."
    data = read_responses(write(tmp_path / "one.jsonl", recs))
    assert data.answers.tolist() == [[-1, -1], [-1, 0]]


# ----------------------------------------------------------------------------- weighted_majority_raw and the scale

def test_raw_vote_left_out_for_log_ratio_scores(tmp_path, capsys):
    """Problem A of ROWS at N=4, log-ratio scores: "7" has 3 votes summing 1.5 - 1 - 2 = -1.5, "5" one vote of 1.5.
    The raw sum picks "5", the minority answer (wrong), where majority and the sigmoid sum pick "7" (right); so no
    raw vote is offered for log-ratio or logit scores, and the output says why."""
    answers, correct = [[[0, 1, 1, 1]]], [[[False, True, True, True]]]  # (P, D, N) = (1, 1, 4); id 0 = "5", 1 = "7"
    votes = Votes(np.array(answers), np.array(correct), 4)
    assert votes.winner_correct(np.array([[[1.5, 1.5, -1.0, -2.0]]])).tolist() == [[False]]  # raw: "5"
    assert votes.winner_correct(np.ones((1, 1, 4))).tolist() == [[True]]  # majority: "7"
    for scale in ("log_ratio", "logit"):
        recs = [{**r, "reward_schema": {**PROB_SCHEMA, "scale": scale}} for r in records()]
        res = run(tmp_path, recs, subsets="first", ns=[4])
        assert "weighted_majority_raw.prm.min" not in res["methods"]
        assert res["weighted_majority_raw_left_out"] == {"prm.min": scale}
        assert res["methods"]["weighted_majority.prm.min"]["acc"] == pytest.approx([1 / 3])  # A right, B, C wrong
        out = capsys.readouterr().out
        assert out.count(f"weighted_majority_raw is left out for prm.min ({scale}): ") == 1
        assert "favours the answer with the fewest votes" in out


# Probabilities (reward_schema scale 'probability'), 3 responses per problem:
#   P1: "4" T .9 | "5" F .4 | "5" F .3        P2: "8" F .6 | "9" T .5 | "9" T .45
# Worked by hand, subsets "first", accuracy = mean over P1, P2:
# weighted_majority_raw.prm.min (sum of the probabilities; = weighted_majority, which leaves probabilities as they are):
#   N=1: P1 "4" T; P2 "8" F                                               -> 1/2
#   N=2: P1 "4" .9 > "5" .4 T; P2 "8" .6 > "9" .5 F                       -> 1/2
#   N=3: P1 "4" .9 > "5" .4 + .3 = .7 T; P2 "9" .5 + .45 = .95 > "8" .6 T   -> 1
# majority: N=1 1/2; N=2 ties -> first ("4" T, "8" F) 1/2; N=3 P1 "5" (2 votes) F, P2 "9" (2 votes) T -> 1/2
# prm.min (top-1): P1 .9 T, P2 .6 F at every N                            -> 1/2
PROB_SCHEMA = {"name": "implicit-prm/scored", "version": 1, "scorer": "step_prm", "format": "math-shepherd",
               "scale": "probability"}
PROB_ROWS = [("P1", "4", True, .9), ("P1", "5", False, .4), ("P1", "5", False, .3),
             ("P2", "8", False, .6), ("P2", "9", True, .5), ("P2", "9", True, .45)]
EXPECTED_PROB = {"weighted_majority_raw.prm.min": [1 / 2, 1 / 2, 1], "weighted_majority.prm.min": [1 / 2, 1 / 2, 1],
                 "majority": [1 / 2, 1 / 2, 1 / 2], "prm.min": [1 / 2, 1 / 2, 1 / 2]}


def test_raw_vote_offered_for_probabilities(tmp_path, capsys):
    recs = [{**r, "reward_schema": PROB_SCHEMA} for r in records(PROB_ROWS)]
    res = run(tmp_path, recs, subsets="first", ns=[1, 2, 3])
    for method, acc in EXPECTED_PROB.items():
        assert res["methods"][method]["acc"] == pytest.approx(acc), method
    assert res["weighted_majority_raw_left_out"] == {}
    out = capsys.readouterr().out
    assert "weighted_majority_raw.prm.min" in out and "left out" not in out


def test_raw_vote_per_source_scale(tmp_path):
    """Merged sources: a probability source gets the raw vote, a log-ratio one beside it does not."""
    recs = [{**r, "scores": {"step": {"min": p}, "ours": {"min": math.log(p / (1 - p))}},
             "reward_schema": {"step": PROB_SCHEMA, "ours": {**PROB_SCHEMA, "scale": "log_ratio"}}}
            for r, (*_, p) in zip(records(PROB_ROWS), PROB_ROWS)]
    res = run(tmp_path, recs, subsets="first", ns=[1, 2, 3])
    assert res["methods"]["weighted_majority_raw.step.min"]["acc"] == pytest.approx([1 / 2, 1 / 2, 1])
    assert "weighted_majority_raw.ours.min" not in res["methods"]
    assert res["weighted_majority_raw_left_out"] == {"ours.min": "log_ratio"}
