"""Step-tag scorers (Math-Shepherd PRM, outcome verifier): tags, logits at the tags against the full LM head, the
first training loss against a hand computation, scoring into the probability schema, and bad step labels."""
from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from implicit_prm.cli import main
from implicit_prm.core.errors import ConfigError, InputError
from implicit_prm.models.heads import StepLogits
from implicit_prm.rewards import aggregate
from implicit_prm.scoring.load import load_scorer
from implicit_prm.scoring.score import ScoreConfig, score
from implicit_prm.steps.encoding import Encoder
from implicit_prm.steps.tags import batch_inputs, encode_tagged, resolve_tag
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train


def test_resolve_tag_picks_a_one_token_tag_and_refuses_split_ones(smol_tokenizer):
    tag = resolve_tag(smol_tokenizer)
    assert tag.tag == " ###"  # " ки" is two tokens for SmolLM2's tokenizer
    assert smol_tokenizer.encode(" ###", add_special_tokens=False) == [tag.tag_id]
    with pytest.raises(ConfigError, match=r"field 'step_tag'.*2 tokens"):
        resolve_tag(smol_tokenizer, " ки")
    with pytest.raises(ConfigError, match="plus_token"):
        resolve_tag(smol_tokenizer, "auto", plus=" plus sign")


def test_encode_tagged_puts_one_tag_after_each_step(smol_tokenizer):
    enc = Encoder(smol_tokenizer, "plain", 512)
    response = "2 + 3 = 5.\n\n5 * 2 = 10. The answer is 10."
    spans = [(0, 12), (12, len(response))]
    tag = resolve_tag(smol_tokenizer)
    e = encode_tagged(enc, "Q", response, spans, tag.tag_id)
    ids = e.response_ids
    step1 = smol_tokenizer.encode("2 + 3 = 5.", add_special_tokens=False)
    sep = smol_tokenizer.encode("\n\n", add_special_tokens=False)
    step2 = smol_tokenizer.encode("5 * 2 = 10. The answer is 10.", add_special_tokens=False)
    assert ids == step1 + [tag.tag_id] + sep + step2 + [tag.tag_id]
    assert e.tag_positions == [len(step1), len(step1) + 1 + len(sep) + len(step2)]
    assert e.n_steps == 2 and e.token_steps[:len(step1) + 1] == [0] * (len(step1) + 1)
    # truncate keeps the steps whose tag fits
    short = Encoder(smol_tokenizer, "plain", len(e.prompt_ids) + len(step1) + 2, "truncate")
    t = encode_tagged(short, "Q", response, spans, tag.tag_id)
    assert t.truncated and t.n_steps == 1 and t.response_ids == step1 + [tag.tag_id]


def test_step_logits_equal_the_lm_heads_logit_difference(tiny_model, smol_tokenizer):
    lm = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tag = resolve_tag(smol_tokenizer)
    enc = Encoder(smol_tokenizer, "plain", 512)
    encs = [encode_tagged(enc, "Start with 3.", "3 + 4 = 7.\n\n7 * 2 = 14.", [(0, 12), (12, 23)], tag.tag_id),
            encode_tagged(enc, "Start.", "1 + 1 = 2.", [(0, 10)], tag.tag_id)]
    ids, mask, pos, counts = batch_inputs(encs, True, smol_tokenizer.pad_token_id, "cpu")
    assert counts == [3, 2]  # the prompt's end, then one tag per step
    with torch.no_grad():
        z = StepLogits(lm, tag.plus_id, tag.minus_id)(ids, mask, pos)
        want = []
        for e in encs:  # each sequence alone, unpadded, through the whole LM head
            logits = lm(torch.tensor([e.ids])).logits[0]
            for p in [len(e.prompt_ids) - 1] + [len(e.prompt_ids) + t for t in e.tag_positions]:
                want.append(float(logits[p, tag.plus_id] - logits[p, tag.minus_id]))
    assert z.tolist() == pytest.approx(want, abs=1e-4)
    # P(+) over the two tokens is sigmoid(z)
    two = torch.softmax(torch.tensor([want[1], 0.0]), 0)[0]
    assert float(torch.sigmoid(torch.tensor(want[1]))) == pytest.approx(float(two))


def test_aggregate_probabilities_hand_values():
    assert aggregate([0.9, 0.5, 0.8], "probability") == pytest.approx(
        {"min": 0.5, "last": 0.8, "prod": 0.36, "mean": 2.2 / 3})


def _presplit(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n=8):
    rows = []
    for i in range(n):
        ok = i % 2 == 0
        rows.append({"problem": f"Start with {i}. Add 2, then add 3.", "steps": [f"{i} + 2 = {i + 2}.",
                     f"{i + 2} + 3 = {i + 5 if ok else i + 6}. The answer is {i + 5 if ok else i + 6}."],
                     "final_answer_correct": ok, "step_labels": [1, 1 if ok else 0],
                     "label": -1 if ok else 1})
    return rows


def test_orm_first_loss_is_the_bce_of_the_initial_logits(tmp_path, tiny_model):
    """objective orm: BCE of z at the prompt's end and every tag against the outcome label, averaged over them."""
    data = _presplit(tmp_path / "d.jsonl", _rows())
    cfg = TrainConfig(data=str(data), output=str(tmp_path / "orm"), model=tiny_model, objective="orm", batch_size=8,
                      max_steps=1, lr=1e-3, precision="fp32", template="plain", progress=False, checkpoint_every=0)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tok_tag = None
    from implicit_prm.models.loading import load_tokenizer
    tok = load_tokenizer(tiny_model)
    tok_tag = resolve_tag(tok)
    enc = Encoder(tok, "plain", 1024)
    losses = []
    with torch.no_grad():
        for r in _rows():
            resp = "\n\n".join(r["steps"])
            cut = len(r["steps"][0]) + 2
            e = encode_tagged(enc, r["problem"], resp, [(0, cut), (cut, len(resp))], tok_tag.tag_id)
            logits = lm(torch.tensor([e.ids])).logits[0]
            y = float(r["final_answer_correct"])
            for p in [len(e.prompt_ids) - 1] + [len(e.prompt_ids) + t for t in e.tag_positions]:
                z = float(logits[p, tok_tag.plus_id] - logits[p, tok_tag.minus_id])
                losses.append(-(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 / (1 + math.exp(z)))))
    out = train(cfg)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-4)
    meta = json.loads((out / "implicit_prm.json").read_text())
    assert meta["kind"] == "step_tag" and meta["boundary0"] and meta["step_tag"] == " ###"

    # scoring writes probabilities, the ORM's start value, and the probability schema
    scored = score(ScoreConfig(input=str(data), output=str(tmp_path / "s.jsonl"), prm=str(out), precision="fp32",
                               progress=False))
    recs = [json.loads(line) for line in scored.read_text().splitlines()]
    assert recs[0]["reward_schema"]["scale"] == "probability" and recs[0]["reward_schema"]["scorer"] == "orm"
    assert 0 < recs[0]["start_value"] < 1 and len(recs[0]["step_rewards"]) == 2
    assert recs[0]["scores"]["last"] == recs[0]["step_rewards"][-1] and recs[0]["q_values"] == recs[0]["step_rewards"]
    # the API agrees with the command
    api = load_scorer(str(out), precision="fp32").score(_rows()[0]["problem"], _rows()[0]["steps"])
    assert api["step_rewards"] == pytest.approx(recs[0]["step_rewards"], abs=1e-6)


def test_step_bce_trains_on_step_labels_and_eval_steps_reads_probabilities(tmp_path, tiny_model):
    data = _presplit(tmp_path / "d.jsonl", _rows())
    out = train(TrainConfig(data=str(data), output=str(tmp_path / "ms"), model=tiny_model, objective="step_bce",
                            batch_size=4, epochs=3, lr=3e-3, precision="fp32", template="plain", progress=False,
                            checkpoint_every=0))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    scored = score(ScoreConfig(input=str(data), output=str(tmp_path / "s.jsonl"), prm=str(out), precision="fp32",
                               progress=False))
    recs = [json.loads(line) for line in scored.read_text().splitlines()]
    assert "start_value" not in recs[0] and recs[0]["reward_schema"]["scorer"] == "step_prm"
    from implicit_prm.eval.steps import read_step_data
    data_steps = read_step_data(scored)
    assert data_steps.signals[0].tolist() == pytest.approx(recs[0]["q_values"])  # no sigmoid on probabilities


def test_step_labels_of_the_wrong_length_name_file_line_and_field(tmp_path, tiny_model, capsys):
    rows = _rows()
    rows[3]["step_labels"] = [1]
    data = _presplit(tmp_path / "d.jsonl", rows)
    code = main(["train", "--data", str(data), "--output", str(tmp_path / "o"), "--model", tiny_model,
                 "--objective", "step_bce", "--batch-size", "4", "--template", "plain", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"{data}:4" in err and "step_labels" in err and "has 1 " in err
    assert not (tmp_path / "o" / "implicit_prm.json").exists()


def test_step_targets_refuses_missing_labels(tmp_path):
    from implicit_prm.data import read_samples
    from implicit_prm.training.targets import step_targets
    rows = _rows(2)
    del rows[1]["step_labels"]
    samples = read_samples(_presplit(tmp_path / "d.jsonl", rows))

    class E:
        n_steps, spans = 2, [(0, 1), (1, 2)]
    with pytest.raises(InputError, match=r"d.jsonl:2.*step_labels.*missing"):
        step_targets(samples, [E(), E()], "steps")
    assert step_targets(samples, [E(), None], "outcome") == [[1.0, 1.0, 1.0], None]


def test_autopsv_rule_on_a_hand_made_confidence_curve():
    from implicit_prm.collect.autopsv import autopsv_labels, first_wrong_step
    # v: 0.6 before step 0, then 0.7, 0.5, 0.2, 0.1 after steps 0..3
    # step 1: (0.5 - 0.7) / 0.7 = -0.29 (not below -0.5); step 2: (0.2 - 0.5) / 0.5 = -0.6 -> wrong
    curve = (0.6, [0.7, 0.5, 0.2, 0.1])
    assert first_wrong_step(*curve) == 2
    assert autopsv_labels(*curve) == [1, 1, 0, 0]
    assert autopsv_labels(*curve, rule="absolute") == [1, 1, 1, 1]  # v_start never below 0.05 (0.2 at step 3)
    assert autopsv_labels(*curve, rule="absolute", abs_threshold=0.3) == [1, 1, 1, 0]  # step 3 starts at 0.2
    assert autopsv_labels(*curve, rel_threshold=-0.25) == [1, 0, 0, 0]  # -0.29 is below -0.25
    assert autopsv_labels(0.03, [0.9, 0.9]) == [0, 0]  # a hopeless start marks the first step
    assert autopsv_labels(0.9, [0.9, 0.95]) == [1, 1]


def test_label_autopsv_command_writes_trainable_labels(tmp_path, capsys):
    from implicit_prm.collect.autopsv import AutoPSVConfig, label_autopsv
    schema = {"name": "implicit-prm/scored", "version": 1, "scorer": "orm", "scale": "probability"}
    recs = [{"prompt": "p", "response": "a\n\nb", "correctness": False, "first_error": 1, "start_value": 0.5,
             "step_rewards": [0.6, 0.1], "scores": {"last": 0.1}, "reward_schema": schema},
            {"prompt": "p", "response": "a\n\nc", "correctness": True, "first_error": -1, "start_value": 0.5,
             "step_rewards": [0.6, 0.2], "scores": {"last": 0.2}, "reward_schema": schema}]
    src = _presplit(tmp_path / "s.jsonl", recs)
    stats = label_autopsv(AutoPSVConfig(input=str(src), output=str(tmp_path / "l.jsonl")))
    out = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [r["step_labels"] for r in out] == [[1, 0], [1, 0]] and [r["label"] for r in out] == [0, 1]
    assert "scores" not in out[0] and stats["accuracy_vs_first_error"] == pytest.approx(3 / 4)
    from implicit_prm.data import read_samples
    assert [s.step_labels for s in read_samples(tmp_path / "l.jsonl", require_label=True)] == [[1, 0], [1, 0]]
    del recs[1]["start_value"]
    _presplit(src, recs)
    assert main(["label-autopsv", "--input", str(src), "--output", str(tmp_path / "m.jsonl")]) == 2
    assert f"{src}:2" in capsys.readouterr().err and not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize("fixture", ["math_shepherd_samples/samples_math-shepherd.jsonl",
                                     "prm800k_samples/samples_prm800k.jsonl"])
def test_step_prm_trains_from_public_step_labelled_files(tmp_path, tiny_model, fixture):
    """Math-Shepherd's published `ки` / `+`/`-` records and PRM800K's ratings train the step PRM as they are."""
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / fixture
    if not path.exists():
        pytest.skip(f"{path} not here")
    from implicit_prm.data import read_samples
    samples = read_samples(path, require_label=True, require_step_labels=True)
    out = train(TrainConfig(data=str(path), output=str(tmp_path / "p"), model=tiny_model, objective="step_bce",
                            batch_size=2, max_steps=1, max_length=4096, precision="fp32", template="plain",
                            progress=False, checkpoint_every=0))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and math.isfinite(log[0]["loss"]) and len(samples) >= 2


def test_a_step_tag_the_tokenizer_splits_is_refused_before_anything_is_written(tmp_path, tiny_model, capsys):
    data = _presplit(tmp_path / "d.jsonl", _rows())
    code = main(["train", "--data", str(data), "--output", str(tmp_path / "o"), "--model", tiny_model,
                 "--objective", "step_bce", "--step-tag", " ки", "--template", "plain", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "step_tag" in err and "2 tokens" in err
    assert not (tmp_path / "o").exists()


def test_outcome_and_bon_read_probability_scores_without_a_sigmoid(tmp_path):
    """A step-tag scorer's scores are probabilities: weighted majority sums them as they are (a sigmoid would
    flatten 0.9 against 0.1 to 0.71 against 0.52), and eval outcome compares them at p = 1/2."""
    from implicit_prm.eval.bon import read_responses
    from implicit_prm.eval.outcome import read_outcome_units
    schema = {"name": "implicit-prm/scored", "version": 1, "scorer": "step_prm", "scale": "probability"}
    recs = [{"prompt": "p", "response": "The answer is 1.", "correctness": True, "scores": {"min": 0.9},
             "reward_schema": schema},
            {"prompt": "p", "response": "The answer is 2.", "correctness": False, "scores": {"min": 0.2},
             "reward_schema": schema},
            {"prompt": "p", "response": "The answer is 2.", "correctness": False, "scores": {"min": 0.3},
             "reward_schema": schema}]
    path = _presplit(tmp_path / "s.jsonl", recs)
    data = read_responses(path)
    assert data.scales == ["probability"]
    from implicit_prm.eval.bon import evaluate
    res = evaluate(data, [3], subsets="first", n_bootstrap=0)
    # answer 1: 0.9; answer 2: 0.2 + 0.3 = 0.5 -> 1 wins (with sigmoids, 0.711 against 0.550 + 0.574 = 1.124: 2 wins)
    assert res["weighted_majority.prm.min"]["acc"] == [1.0] and res["majority"]["acc"] == [0.0]
    labels, scores, methods, _ = read_outcome_units(path)
    assert scores[:, 0] == pytest.approx([math.log(9), math.log(0.25), math.log(0.3 / 0.7)])
