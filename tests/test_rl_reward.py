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
