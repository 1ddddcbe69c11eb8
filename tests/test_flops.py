"""The FLOPs ledger and `implicit-prm flops`: hand-computed counts, P of tiny models, ledger files, the method table,
the paper's recomputed ratios, and malformed ledgers."""
from __future__ import annotations

import json

import pytest

from implicit_prm.cli import main
from implicit_prm.flops.counting import (
    SMOLLM2_135M,
    ModelShape,
    attention_flops,
    causal_context_sum,
    compute_params,
)
from implicit_prm.flops.ledger import Ledger, ledger_path, read_ledger
from implicit_prm.flops.paper import LLAMA31_8B, paper_comparison

TINY = ModelShape("tiny", params=1000, n_layer=2, d_attn=4)


def test_causal_context_sum_and_attention_by_hand():
    assert causal_context_sum(10) == 55  # 1 + 2 + ... + 10
    assert causal_context_sum(4) == 10
    assert causal_context_sum(2, start=3) == 9  # two tokens after a 3-token prompt: contexts 4 and 5
    assert causal_context_sum(1) == 1
    assert attention_flops(n_layer=2, d_attn=4, context_sum=55) == 880  # 2 * 2 * 4 * 55


def tiny_ledger(lora: bool = True) -> Ledger:
    """P = 1000, n_layer 2, d_attn 4 (attention = 16 FLOPs per unit of context):
    generation, prompt 3 + 2 generated: weights 2*1000*5 = 10000; context 1+2+3 + 4+5 = 15 -> 240;    10240 (data)
    score, one 10-token sequence:       weights 2*1000*10 = 20000; context 55 -> 880;                 20880 (scoring)
    train, one 5-token sequence, LoRA:  weights 4*1000*5 = 20000; context 15 -> 3 * 240 = 720;        20720 (training)
    reference, sequences of 2 and 3:    weights 2*1000*5 = 10000; context 3 + 6 = 9 -> 144;           10144 (training)
    """
    led = Ledger(TINY, command="train", method="implicit_ce", lora=lora)
    led.add_generation(prompt=3, generated=2)
    led.add_forward(10, kind="score")
    led.add_train([5])
    led.add_forward([2, 3], kind="reference", phase="training")
    return led


def test_ledger_counts_by_hand():
    led = tiny_ledger()
    assert led.kind_flops("generation") == (10000, 240)
    assert led.kind_flops("score") == (20000, 880)
    assert led.kind_flops("train") == (20000, 720)
    assert led.kind_flops("reference") == (10000, 144)
    assert led.by_phase() == {"data": 10240, "training": 20720 + 10144, "scoring": 20880}
    assert led.total() == 61984
    g = led.kinds["generation"]
    assert (g.sequences, g.prompt_tokens, g.generated_tokens, g.tokens, g.context_sum) == (1, 3, 2, 5, 15)
    full = tiny_ledger(lora=False)  # full fine-tune: 6 * 1000 * 5 = 30000 weights, attention still 3x: 720
    assert full.kind_flops("train") == (30000, 720)


def test_continuations_count_only_new_tokens_and_ledgers_add_up():
    """Search's incremental scoring: 2 tokens after 3 cached ones (context 4 + 5 = 9) and 1 after 10 (11):
    weights 2*1000*3 = 6000, attention 16 * 20 = 320. Two halves absorbed into one equal the whole."""
    led = Ledger(TINY, "search")
    led.add_continuation([(3, 2), (10, 1)], kind="search_prm", phase="scoring")
    assert led.kind_flops("search_prm") == (6000, 320)
    e = led.kinds["search_prm"]
    assert (e.sequences, e.tokens, e.context_sum) == (2, 3, 20)
    whole = tiny_ledger()
    a, b = Ledger(TINY, "train", lora=True), Ledger(TINY, "train", lora=True)
    a.add_generation(prompt=3, generated=2)
    a.add_forward(10, kind="score")
    b.add_train([5])
    b.add_forward([2, 3], kind="reference", phase="training")
    a.absorb(b)
    assert a.to_dict()["kinds"] == whole.to_dict()["kinds"] and a.total() == whole.total() == 61984
    with pytest.raises(ValueError, match="cannot add"):
        a.absorb(Ledger(ModelShape("other", 5, 1, 1), "train"))


def test_generation_without_prefill_keeps_the_prompt_as_context():
    led = Ledger(TINY, command="rollout")
    led.add_generation(prompt=3, generated=2, prefill=False)  # the batch already prefilled this prompt
    g = led.kinds["generation"]
    assert (g.tokens, g.prompt_tokens, g.context_sum) == (2, 0, 9)  # contexts 4 + 5
    assert led.kind_flops("generation") == (4000, 144)  # 2 * 1000 * 2; 16 * 9


def test_a_kind_keeps_its_mode_and_phase():
    led = tiny_ledger()
    with pytest.raises(ValueError, match="already counted"):
        led.add_train(3, kind="score")
    with pytest.raises(ValueError, match="phase"):
        led.add_forward(3, kind="other", phase="eval")


def tiny_llama(tied: bool):
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=32, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=16, tie_word_embeddings=tied)
    return AutoModelForCausalLM.from_config(cfg), cfg


@pytest.mark.parametrize("tied", [True, False])
def test_compute_params_counts_the_head_once(tied):
    """Per layer: q, k, v, o 8x8 each (2 kv heads of dim 4) = 4 * 64 = 256; gated MLP 3 * 8 * 16 = 384; two norms
    16 -> 656; two layers 1312; final norm 8; head 32 x 8 = 256; the embedding lookup left out. P = 1576, tied
    (the head is the embedding: dropping "the embedding" would lose it) or not (1832 parameters, 256 of them the
    separate embedding)."""
    model, cfg = tiny_llama(tied)
    assert sum(p.numel() for p in model.parameters()) == (1576 if tied else 1832)
    assert compute_params(model) == 1576
    shape = ModelShape.from_model(model, "tiny")
    assert (shape.params, shape.n_layer, shape.d_attn) == (1576, 2, 8)
    assert ModelShape.from_config(cfg).params == 1576  # from the config alone, no weights


def test_shapes_from_configs_by_hand():
    # SmolLM2-135M: per layer 576*576*2 (q, o) + 576*192*2 (k, v) + 3*576*1536 + 2*576 = 3540096; 30 layers
    # 106202880; final norm 576; tied head 49152*576 = 28311552 -> 134515008 (the model's own 134.5M: tied, so P
    # is every parameter)
    smol = ModelShape.from_config(SMOLLM2_135M)
    assert (smol.name, smol.params, smol.n_layer, smol.d_attn) == ("smollm2-135m", 134515008, 30, 576)
    # Llama-3.1-8B: per layer 2*4096^2 + 2*4096*1024 + 3*4096*14336 + 2*4096 = 218112000; 32 layers; norm 4096;
    # untied head 128256*4096 = 525336576 (its input embedding, as large, is left out)
    llama = ModelShape.from_config(LLAMA31_8B)
    assert llama.params == 218112000 * 32 + 4096 + 525336576 == 7504924672


def test_simulated_policy_ledger():
    led = Ledger.simulated_policy(command="data")
    led.add_generation(prompt=20, generated=30)
    d = led.to_dict()
    assert d["simulated"] is True and d["policy_model"] == "smollm2-135m" and d["params"] == 134515008
    assert d["total_flops"] == 2 * 134515008 * 50 + 2 * 30 * 576 * causal_context_sum(50)


def test_ledger_path_naming(tmp_path):
    assert ledger_path(tmp_path / "scores.jsonl") == tmp_path / "scores.jsonl.flops.json"
    (tmp_path / "run").mkdir()
    assert ledger_path(tmp_path / "run") == tmp_path / "run" / "flops.json"
    assert ledger_path(f"{tmp_path}/new_dir/") == tmp_path / "new_dir" / "flops.json"


def test_write_read_round_trip_and_resume(tmp_path):
    led = tiny_ledger()
    path = led.write(tmp_path / "scores.jsonl")
    assert path == tmp_path / "scores.jsonl.flops.json"
    data = json.loads(path.read_text())
    assert data["schema"] == "implicit-prm/flops/v1" and data["total_flops"] == 61984
    assert data["kinds"]["generation"]["prompt_tokens"] == 3 and "prompt_tokens" not in data["kinds"]["score"]
    assert data["kinds"]["train"]["flops"] == {"weights": 20000, "attention": 720, "total": 20720}
    assert data["notes"] and data["lora"] is True and data["method"] == "implicit_ce"
    assert read_ledger(path).to_dict() == data
    # a resumed run adds to the ledger it finds; another model's ledger is refused
    resumed = Ledger.load_or_new(tmp_path / "scores.jsonl", TINY, command="train", lora=True)
    resumed.add_forward(10, kind="score")
    assert resumed.total() == 61984 + 20880
    assert Ledger.load_or_new(tmp_path / "other.jsonl", TINY, command="train").total() == 0
    from implicit_prm.core.errors import InputError

    with pytest.raises(InputError, match="field 'params'"):
        Ledger.load_or_new(tmp_path / "scores.jsonl", ModelShape("tiny", 999, 2, 4), command="train", lora=True)
    with pytest.raises(InputError, match="field 'lora'"):  # a full run would add 6P tokens to a 4P ledger
        Ledger.load_or_new(tmp_path / "scores.jsonl", TINY, command="train")


def run_cli(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_method_table_sums_ledgers_with_ratio(tmp_path, capsys):
    a1 = tiny_ledger().write(tmp_path / "a1.jsonl")  # 61984, method "implicit_ce" inside
    a2 = Ledger(TINY, command="data", method="implicit_ce")
    a2.add_generation(prompt=3, generated=2)  # 10240 more data collection
    a2 = a2.write(tmp_path / "a2.jsonl")
    b = Ledger(TINY, command="train")
    b.add_train(10)  # full: 6 * 1000 * 10 = 60000 + 3 * 880 = 62640
    b = b.write(tmp_path / "b")
    out = tmp_path / "table.json"
    text = run_cli(capsys, "flops", "--ledgers", a1, a2, "--method", f"shepherd={b}", "--baseline", "implicit_ce",
                   "--output", out)
    table = json.loads(out.read_text())
    ce, sh = table["methods"]["implicit_ce"], table["methods"]["shepherd"]
    assert ce["flops"] == {"data": 20480, "training": 30864, "scoring": 20880} and ce["total"] == 72224
    assert sh["total"] == 62640 and sh["ratio"] == pytest.approx(62640 / 72224)
    assert ce["ratio"] == 1.0 and table["baseline"] == "implicit_ce"
    assert list(table["methods"]) == ["shepherd", "implicit_ce"]  # --method first, then ledgers' own
    assert "| shepherd |" in text and "0.87" in text
    assert (tmp_path / "table.md").read_text().startswith("FLOPs by method")
    assert (tmp_path / "table.json.config.json").exists()
    # default baseline: the first method, whose ratio column is headed "x <baseline>"
    text = run_cli(capsys, "flops", "--method", f"x={a1},{a2}", f"y={b}")
    assert "| total | x x |" in text and "| x | 2.05e+04 | 3.09e+04 | 2.09e+04 | 7.22e+04 | 1.00 |" in text


def test_paper_json_and_ratios_by_hand(tmp_path, capsys):
    out = tmp_path / "paper.json"
    text = run_cli(capsys, "flops", "--paper", "--output", out)
    res = json.loads(out.read_text())
    for key in ("ratios", "paper_ratios", "assumptions", "formula", "sensitivity", "discussion"):
        assert key in res
    assert set(res["ratios"]) == {"math_shepherd", "autopsv", "dpo"}
    assert res["paper_ratios"]["math_shepherd"] == [38.8, 38.6, 38.8]
    assert all(len(r) == 3 for r in res["ratios"].values())
    assert {a["name"] for a in res["assumptions"]} >= {"steps_per_response", "completions_per_step", "accuracy"}
    assert all(a["source"] for a in res["assumptions"])
    assert {s["assumption"] for s in res["sensitivity"]} >= {"steps_per_response", "accuracy", "epochs"}
    assert "best_single_change" in res["discussion"]["math_shepherd"] and "Sensitivity" in text
    # By hand. Every term of CE, DPO and AutoPSV is a whole sequence of L tokens: one forward F (generation costs
    # the same), training 3F (epochs 1), the reference F, AutoPSV's ORM labelling F.
    #   CE per response = F + 3F + F = 5F;  AutoPSV = F + 3F (ORM) + F (labels) + 3F (PRM) = 8F -> 8/5 = 1.6
    #   DPO at n = 2: 2F + 2 * n(n-1) a(1-a) * 3F + n (1 - a^n - (1-a)^n) F over 2 * 5F, a = 0.519:
    #   pairs = 2 * 0.519 * 0.481 = 0.499278; mixed = 1 - 0.519^2 - 0.481^2 = 0.499278
    #   (2 + 6 * 0.499278 + 2 * 0.499278) / 10 = (2 + 3.994224) / 10 = 0.5994224 (at n = 2 the two coincide)
    assert res["ratios"]["autopsv"] == pytest.approx([1.6, 1.6, 1.6])
    assert res["ratios"]["dpo"][0] == pytest.approx(0.5994224)
    mixed8 = 1 - 0.519 ** 8 - 0.481 ** 8
    assert res["ratios"]["dpo"][2] == pytest.approx((8 + 6 * 56 * 0.519 * 0.481 + 8 * mixed8) / 40)  # 56 pairs
    # Math-Shepherd at any n, per response, P = 7504924672, attention 2 * 32 * 4096 = 262144 per unit of context:
    # L = 150 + 400 = 550; F = 2P*550 + 262144 * 550*551/2; train 3F; no reference.
    # 8 steps, each: one prefill of q = 350 tokens (2P*350 + 262144 * 350*351/2) and 8 completions of c = 200
    # tokens after it (2P*200 + 262144 * (200*350 + 200*201/2) each).
    P, A = 7504924672, 262144
    F = 2 * P * 550 + A * 550 * 551 / 2
    prefill = 2 * P * 350 + A * 350 * 351 / 2
    complete = 2 * P * 200 + A * (200 * 350 + 200 * 201 / 2)
    shepherd = F + 8 * (prefill + 8 * complete) + 3 * F
    assert res["ratios"]["math_shepherd"][1] == pytest.approx(shepherd / (5 * F))


def test_paper_is_deterministic_and_sensitivity_moves_the_right_way():
    res = paper_comparison()
    by = {(s["assumption"], s["value"]): s["ratios"] for s in res["sensitivity"]}
    ms = res["ratios"]["math_shepherd"][0]
    assert by[("steps_per_response", 16)]["math_shepherd"][0] > ms > by[("steps_per_response", 4)]["math_shepherd"][0]
    assert by[("accuracy", 0.2595)]["dpo"][2] < res["ratios"]["dpo"][2]  # fewer pairs away from a = 1/2
    d = res["discussion"]["math_shepherd"]
    assert d["best_single_change"]["distance"] <= d["closest_alternative"]["distance"] <= d["distance"]


def write_bad(tmp_path, change) -> str:
    data = tiny_ledger().to_dict()
    change(data)
    path = tmp_path / "bad.flops.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(params="big"), "params"),
    (lambda d: d.update(params=-5), "params"),
    (lambda d: d.pop("n_layer"), "n_layer"),
    (lambda d: d.update(schema="other/v9"), "schema"),
    (lambda d: d["kinds"]["score"].update(mode="sideways"), "kinds.score.mode"),
    (lambda d: d["kinds"]["generation"].update(tokens=99), "kinds.generation.tokens"),
    (lambda d: d["kinds"]["train"].pop("context_sum"), "kinds.train.context_sum"),
    (lambda d: d.update(total_flops=1), "total_flops"),
    (lambda d: d.update(method=None), "method"),  # listed in --ledgers, but no method to count it toward
])
def test_malformed_ledger_exits_2_naming_file_and_field(tmp_path, capsys, change, field):
    path = write_bad(tmp_path, change)
    assert main(["flops", "--ledgers", path]) == 2
    err = capsys.readouterr().err
    assert path in err and f"field '{field}'" in err


def test_bad_flops_arguments_exit_2(tmp_path, capsys):
    ok = tiny_ledger().write(tmp_path / "ok.jsonl")
    for argv, words in ((["--method", "noequals"], "NAME=LEDGER"), (["--paper", "--ledgers", str(ok)], "--paper"),
                        ([], "no ledgers"), (["--ledgers", str(ok), "--baseline", "zzz"], "baseline"),
                        (["--ledgers", str(ok), "--method", f"x={ok}", f"y={ok}"], "twice")):
        assert main(["flops", *argv]) == 2, argv
        assert words in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["flops", "--ledgers", str(tmp_path / "junk.json")]) == 2
    assert "junk.json:1: malformed JSON" in capsys.readouterr().err
