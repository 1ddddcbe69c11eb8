"""Each released scoring format against its model card's own snippet, run on a tiny random checkpoint in that
family's exact layout (tests/released.py): the scores `implicit-prm score` writes equal the card's computation
from the model's logits. Also --format auto, and the refusals (undetectable checkpoint, remote code, a split step
tag, a head with the wrong number of labels), each exiting 2 and writing nothing."""
from __future__ import annotations

import json

import pytest
import released
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from implicit_prm.cli import main
from implicit_prm.core.errors import ConfigError
from implicit_prm.scoring.load import detect_format, load_scorer

QUESTION = "Janet has 3 apples and buys 4 more. How many?"
STEPS = ["She starts with 3 apples.", "3+4=7, so she has 7.", "The answer is 7."]


@pytest.fixture(scope="module")
def ms_dir(tmp_path_factory):
    return released.math_shepherd(tmp_path_factory.mktemp("math_shepherd"))


@pytest.fixture(scope="module")
def rlhflow_dir(tmp_path_factory, smol_tokenizer_dir):
    return released.rlhflow(tmp_path_factory.mktemp("rlhflow"), smol_tokenizer_dir)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory, smol_tokenizer_dir):
    return released.qwen_prm(tmp_path_factory.mktemp("qwen_prm"), smol_tokenizer_dir)


@pytest.fixture(scope="module")
def orm_dir(tmp_path_factory, smol_tokenizer_dir):
    return released.skywork_orm(tmp_path_factory.mktemp("skywork"), smol_tokenizer_dir)


def _ours(prm, fmt, **kw):
    return load_scorer(prm, fmt, precision="fp32", device="cpu", **kw).score(QUESTION, STEPS)


def test_math_shepherd_matches_its_model_card(ms_dir):
    """math-shepherd-mistral-7b-prm's card: candidate tokens encode("+ -")[1:], tag encode("ки")[-1], input
    f"{question} {output}" with " ки" after each step and steps on their own lines; softmax over (+, -) at the tags."""
    tok = AutoTokenizer.from_pretrained(ms_dir)
    model = AutoModelForCausalLM.from_pretrained(ms_dir).eval()
    candidate_tokens = tok.encode("+ -")[1:]
    step_tag_id = tok.encode("ки")[-1]
    assert tok.convert_ids_to_tokens(candidate_tokens) == ["▁+", "▁-"]  # not the bare '+' of "3+4"
    assert tok.convert_ids_to_tokens([step_tag_id]) == ["▁ки"]
    output = "\n".join(f"{s} ки" for s in STEPS)
    input_id = torch.tensor([tok.encode(f"{QUESTION} {output}")])
    with torch.no_grad():
        logits = model(input_id).logits[:, :, candidate_tokens]
    card = logits.softmax(dim=-1)[:, :, 0][input_id == step_tag_id].tolist()
    rec = _ours(ms_dir, "math-shepherd")
    assert rec["step_rewards"] == pytest.approx(card, abs=1e-5)
    assert rec["scores"]["min"] == pytest.approx(min(card), abs=1e-5)
    assert rec["reward_schema"]["scale"] == "probability" and rec["reward_schema"]["format"] == "math-shepherd"


def test_rlhflow_matches_its_evaluation_script_in_one_pass(rlhflow_dir):
    """RLHFlow's prm_evaluate: per step k, the conversation (question + step 1, '+', step 2, '+', ... step k, '+')
    through the chat template, P(+) from logits[:, -3] over (encode('+')[-1], encode('-')[-1]). We score all
    steps in one pass; each is read where the card reads it."""
    tok = AutoTokenizer.from_pretrained(rlhflow_dir)
    model = AutoModelForCausalLM.from_pretrained(rlhflow_dir).eval()
    candidate_tokens = [tok.encode("+")[-1], tok.encode("-")[-1]]
    card, conversation = [], []
    for k, step in enumerate(STEPS):
        conversation.append({"content": f"{QUESTION} {step}" if k == 0 else step, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        text = tok.apply_chat_template(conversation, tokenize=False)
        input_ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids).logits[:, -3, candidate_tokens]
        card.append(logits.softmax(dim=-1)[:, 0].item())
    assert "Cutting Knowledge Date: December 2023" in text  # the family template's own system turn
    rec = _ours(rlhflow_dir, "rlhflow")
    assert rec["step_rewards"] == pytest.approx(card, abs=1e-5)


def test_qwen_token_classification_matches_its_model_card(qwen_dir):
    """Qwen2.5-Math-PRM's card: system/user/assistant with '<extra_0>' after every step, tokenizer.encode,
    softmax over the 2 labels at each <extra_0>, label 1 = the step is right. Loading runs the shipped modeling
    file, so it needs --trust-remote-code."""
    tok = AutoTokenizer.from_pretrained(qwen_dir)
    model = AutoModel.from_pretrained(qwen_dir, trust_remote_code=True).eval()
    messages = [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "<extra_0>".join(STEPS) + "<extra_0>"}]
    conversation_str = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = tok.encode(conversation_str, return_tensors="pt")
    with torch.no_grad():
        outputs = model(input_ids=input_ids)
    step_sep_id = tok.encode("<extra_0>")[0]
    probabilities = outputs[0].softmax(dim=-1) * (input_ids == step_sep_id).unsqueeze(-1)
    card = probabilities[0][probabilities[0] != 0].view(-1, 2)[:, 1].tolist()
    assert len(card) == len(STEPS)
    rec = _ours(qwen_dir, "token-classification", trust_remote_code=True)
    assert rec["step_rewards"] == pytest.approx(card, abs=1e-5)
    # without the card's system message the template writes Qwen's default one, and the scores change
    other = _ours(qwen_dir, "token-classification", trust_remote_code=True, system_prompt="Be brief.")
    assert other["step_rewards"] != pytest.approx(card, abs=1e-5)


def test_orm_matches_the_skywork_card(orm_dir):
    """Skywork-Reward's card: apply_chat_template(tokenize=False), drop a leading BOS text, tokenize, and the
    score is logits[0][0] of the sequence-classification head: our last step's value and scores['last']."""
    tok = AutoTokenizer.from_pretrained(orm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(orm_dir).eval()
    conv = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "\n\n".join(STEPS)}]
    formatted = tok.apply_chat_template(conv, tokenize=False)
    assert formatted.startswith(tok.bos_token)
    formatted = formatted[len(tok.bos_token):]
    with torch.no_grad():
        card = model(**tok(formatted, return_tensors="pt")).logits[0][0].item()
    rec = _ours(orm_dir, "orm")
    assert rec["scores"]["last"] == pytest.approx(card, abs=1e-5)
    assert rec["step_rewards"][-1] == pytest.approx(card, abs=1e-5) and len(rec["step_rewards"]) == len(STEPS)
    assert rec["reward_schema"]["scale"] == "logit"


def test_auto_detects_heads_and_our_metadata_but_refuses_plain_causal_lms(qwen_dir, orm_dir, rlhflow_dir):
    assert detect_format(qwen_dir) == "token-classification"
    assert detect_format(orm_dir) == "orm"
    assert detect_format(rlhflow_dir, implicit_settings=True) == "implicit"  # --ref / --reference-free say so
    with pytest.raises(ConfigError, match="(?s)plain causal LM.*--format.*math-shepherd.*rlhflow.*token-class"):
        detect_format(rlhflow_dir)


def _score_cli(tmp_path, prm, *flags):
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"problem": QUESTION, "steps": STEPS}) + "\n")
    out = tmp_path / "out.jsonl"
    rc = main(["score", "--input", str(rows), "--output", str(out), "--prm", prm, "--precision", "fp32",
               "--no-progress", *flags])
    return rc, out


def test_refusals_exit_2_and_write_nothing(tmp_path, capsys, rlhflow_dir, qwen_dir, smol_tokenizer_dir):
    rc, out = _score_cli(tmp_path, rlhflow_dir)  # auto, plain causal LM
    assert rc == 2 and not out.exists() and "--format" in capsys.readouterr().err
    rc, out = _score_cli(tmp_path, qwen_dir)  # remote code without the flag
    assert rc == 2 and not out.exists() and "--trust-remote-code" in capsys.readouterr().err
    rc, out = _score_cli(tmp_path, rlhflow_dir, "--format", "math-shepherd")  # 'ки' is 2 byte-level tokens here
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists() and "'step_tag'" in err and "2 tokens" in err
    three = released.skywork_orm(tmp_path / "three", smol_tokenizer_dir, labels=3)
    rc, out = _score_cli(tmp_path, three)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists() and "3 labels" in err and "needs 1" in err


def test_cli_writes_the_same_records_and_a_flops_ledger(tmp_path, qwen_dir):
    rc, out = _score_cli(tmp_path, qwen_dir, "--trust-remote-code")
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["reward_schema"]["format"] == "token-classification" and len(rec["q_values"]) == len(STEPS)
    assert rec["steps"] == STEPS and rec["step_spans"]
    assert (tmp_path / "out.jsonl.flops.json").exists()


def test_best_of_n_runs_on_a_released_format(tmp_path, qwen_dir, builtin_data):
    """eval bon on token-classification scores: at N = all responses its top-1 pick is the max of scores.min,
    compared here with a pick made by hand from the scored file."""
    from implicit_prm.eval.bon import BonConfig, run_bon

    out = tmp_path / "scored.jsonl"
    assert main(["score", "--input", str(builtin_data), "--output", str(out), "--prm", qwen_dir, "--format",
                 "token-classification", "--trust-remote-code", "--precision", "fp32", "--no-progress"]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    groups: dict = {}
    for r in recs:
        groups.setdefault(r["prompt"], []).append(r)
    picks = [max(g, key=lambda r: r["scores"]["min"]) for g in groups.values()]
    want = sum(bool(p["correctness"]) for p in picks) / len(picks)
    res = run_bon(BonConfig(input=str(out), n_bootstrap=0, plot=str(tmp_path / "b.png")))
    assert res["ns"][-1] == 2 and res["methods"]["prm.min"]["acc"][-1] == pytest.approx(want)
    assert res["methods"]["prm.min"]["std"][-1] == 0


def test_format_choices_match_the_scorers():
    import typing

    from implicit_prm.scoring.load import FORMATS
    from implicit_prm.scoring.score import ScoreConfig

    assert typing.get_args(typing.get_type_hints(ScoreConfig)["format"]) == ("auto", *FORMATS)
