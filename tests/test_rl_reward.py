"""The frozen-PRM reward function for plain GRPO, against offline scoring of the same texts."""
from __future__ import annotations

import pytest

from implicit_prm.core.errors import InputError
from implicit_prm.rl.reward import PRMReward
from implicit_prm.scoring.implicit import ImplicitPRM

PROMPTS = ["What is 2 + 3?", [{"role": "user", "content": "What is 4 + 4?"}]]
COMPLETIONS = ["2 plus 3 is 5.\n\nThe answer is 5.", [{"role": "assistant", "content": "4 + 4 = 9."}]]


@pytest.fixture(scope="module")
def prm(tiny_model, tiny_model_b):
    return ImplicitPRM.from_pretrained(tiny_model_b, ref=tiny_model, beta=0.5, precision="fp32", device="cpu")


def test_reward_equals_offline_score_for_text_and_conversational_inputs(prm):
    want = [prm.score("What is 2 + 3?", "2 plus 3 is 5.\n\nThe answer is 5."),
            prm.score("What is 4 + 4?", "4 + 4 = 9.")]
    assert [len(w["step_rewards"]) for w in want] == [2, 1]
    for agg in ("min", "last", "sum", "mean"):
        reward = PRMReward(prm, agg=agg)
        assert reward.__name__ == f"prm_{agg}"
        got = reward(prompts=PROMPTS, completions=COMPLETIONS, completion_ids=[[1], [2]], answer=["5", "8"])
        assert got == pytest.approx([w["scores"][agg] for w in want], abs=1e-6)
    assert PRMReward(prm)(PROMPTS, COMPLETIONS)[0] == pytest.approx(min(want[0]["step_rewards"]), abs=1e-6)


def test_reward_loads_a_checkpoint_and_names_bad_input(prm, tiny_model, tiny_model_b):
    reward = PRMReward(tiny_model_b, ref=tiny_model, beta=0.5, precision="fp32", device="cpu")
    assert reward(PROMPTS[:1], COMPLETIONS[:1]) == pytest.approx(PRMReward(prm)(PROMPTS[:1], COMPLETIONS[:1]))
    with pytest.raises(InputError, match="completions"):
        reward(["What is 1 + 1?"], [[{"role": "user", "content": "2"}]])
    with pytest.raises(ValueError, match="agg 'prod'"):
        PRMReward(prm, agg="prod")(PROMPTS[:1], COMPLETIONS[:1])


def test_correctness_reward_grades_an_empty_sample_as_unanswered():
    # A policy may end its sample at once; a data file's empty completion is still refused (test_step_formats.py).
    from implicit_prm.rl.prime import CorrectnessReward
    logged = {}
    got = CorrectnessReward()(["p"] * 4, ["", [{"role": "assistant", "content": ""}], "so \\boxed{4}", "\\boxed{5}"],
                              answer=["4", "4", "4", "4"], log_metric=lambda k, v: logged.update({k: v}))
    assert got == [0.0, 0.0, 1.0, 0.0]
    assert logged == {"answered": 0.5}


def test_prm_reward_gives_an_empty_sample_its_empty_value_and_scores_the_rest(prm):
    # An empty completion has no step: None by default (TRL: this function does not score the sample), or `empty`.
    want = PRMReward(prm)(PROMPTS, COMPLETIONS)
    comps = ["", COMPLETIONS[0], [{"role": "assistant", "content": ""}], COMPLETIONS[1]]
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]]
    got = PRMReward(prm)(prompts, comps)
    assert got[0] is None and got[2] is None and got[1::2] == pytest.approx(want, abs=1e-6)
    assert PRMReward(prm, empty=-3.0)(prompts[:1] * 2, ["", " "]) == [-3.0, -3.0]
