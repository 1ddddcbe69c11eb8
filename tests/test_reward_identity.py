"""The implicit-reward identity on tiny random models: scored step rewards sum to beta * sum(logp_prm - logp_ref).

Every expected number is recomputed here with plain transformers (one full forward, log_softmax, gather) and this
file's own step splitting, then compared with `implicit_prm.scoring.score.score` and the `ImplicitPRM` Python API.
"""
import json
import sqlite3

import numpy as np
import pytest
import torch

import implicit_prm.scoring.reference as reference
from implicit_prm import ImplicitPRM
from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts
from implicit_prm.losses import DEFAULT_BETA
from implicit_prm.scoring.score import ScoreConfig, score

BETA = 0.5
TOL = 1e-4

PROCESSBENCH = {"id": "pb-0", "problem": "Compute (3 + 4) * 2 - 5.",
                "steps": ["First, 3 + 4 = 7.", "Then 7 * 2 = 14.", "Finally 14 - 5 = 9, so the answer is 9."],
                "label": -1, "final_answer_correct": True}
FLAT = {"prompt": "What is 12 * 12?", "response": "12 * 10 = 120 and 12 * 2 = 24.\n\n\n120 + 24 = 144.\n\nSo 144.",
        "label": 1}


@pytest.fixture(scope="module")
def third_model(tmp_path_factory, smol_tokenizer_dir):
    """A third PRM with the same tokenizer, to re-score against the same (cached) reference."""
    from conftest import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny_c"), smol_tokenizer_dir, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An input file mixing the three formats, and (prompt, response, steps) of each sample in file order."""
    records = generate_rollouts(BuiltinDataConfig(output="-", n_problems=2, samples_per_problem=2, seed=0))
    path = tmp_path_factory.mktemp("data") / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*records, PROCESSBENCH, FLAT]))
    samples = [(r["prompt"], c, None) for r in records for c in r["completions"]]
    samples.append((PROCESSBENCH["problem"], "\n\n".join(PROCESSBENCH["steps"]), PROCESSBENCH["steps"]))
    samples.append((FLAT["prompt"], FLAT["response"], None))
    return path, samples


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


_LMS, _LOGPS = {}, {}


def plain_logps(path: str, tok, prompt: str, response: str) -> np.ndarray:
    """log p(response token | chat-templated prompt, earlier tokens) by one full forward, float64 (memoized)."""
    from transformers import AutoModelForCausalLM

    key = (path, prompt, response)
    if key in _LOGPS:
        return _LOGPS[key]
    if path not in _LMS:
        _LMS[path] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    p = tok(text, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = _LMS[path](torch.tensor([p + r])).logits[0]  # (P + R, V)
    lp = torch.log_softmax(logits.double(), -1)  # (P + R, V)
    pos = torch.arange(len(p) - 1, len(p) + len(r) - 1)  # positions that predict the response tokens
    _LOGPS[key] = lp[pos, torch.tensor(r)].numpy()  # (R,)
    return _LOGPS[key]


def my_bounds(response: str, steps) -> list[int]:
    """Step starts after the first: from the steps list, else 'Step ' line starts, else ends of newline runs."""
    if steps is not None:
        return list(np.cumsum([len(s) + 2 for s in steps[:-1]]))
    markers = [i for i in range(1, len(response)) if response[i - 1] == "\n" and response.startswith("Step ", i)]
    if response.startswith("Step ") and markers:
        return markers
    out, i = [], 0
    while i < len(response):
        j = i
        while j < len(response) and response[j] == "\n":
            j += 1
        if j - i >= 2 and j < len(response):
            out.append(j)
        i = max(j, i + 1)
    return out


def expected(tok, prm: str, ref: str | None, prompt: str, response: str, steps) -> dict:
    """Token rewards, spans and per-step sums computed independently of implicit_prm."""
    lp = plain_logps(prm, tok, prompt, response)
    tok_r = BETA * (lp if ref is None else lp - plain_logps(ref, tok, prompt, response))  # (R,)
    b = [0, *my_bounds(response, steps), len(response)]
    spans = [(b[k], b[k + 1]) for k in range(len(b) - 1)]
    starts = [s for s, _ in tok(response, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    owner = [next(k for k, (s, e) in enumerate(spans) if s <= c < e) for c in starts]
    step_r = [float(sum(r for r, o in zip(tok_r, owner) if o == k)) for k in range(len(spans))]
    return {"token_rewards": tok_r, "spans": spans, "step_rewards": step_r, "total": float(tok_r.sum())}


def check_record(rec: dict, exp: dict, with_tokens: bool = True):
    step_r = rec["step_rewards"]
    assert rec["step_spans"] == [list(s) for s in exp["spans"]]
    assert len(step_r) == len(exp["spans"]) >= 1
    # the identity: the step rewards add up to beta * sum(logp_prm - logp_ref) = the outcome reward
    assert sum(step_r) == pytest.approx(exp["total"], abs=TOL)
    assert rec["q_values"][-1] == pytest.approx(exp["total"], abs=TOL)
    assert rec["q_values"] == pytest.approx(list(np.cumsum(step_r)), abs=1e-9)
    assert step_r == pytest.approx(exp["step_rewards"], abs=TOL)
    assert rec["scores"] == pytest.approx({"min": min(step_r), "last": step_r[-1], "sum": sum(step_r),
                                           "mean": sum(step_r) / len(step_r)}, abs=1e-9)
    if with_tokens:
        assert rec["token_rewards"] == pytest.approx(list(exp["token_rewards"]), abs=1e-5)
        assert sum(rec["token_rewards"]) == pytest.approx(exp["total"], abs=TOL)
    assert "truncated" not in rec


def with_spans(api_record: dict, exp: dict) -> dict:
    """The API returns no step_spans (the caller has them): add the expected ones so check_record applies."""
    return {**api_record, "step_spans": [list(s) for s in exp["spans"]]}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def cfg(data, tmp_path, prm, ref, name, **kw) -> ScoreConfig:
    return ScoreConfig(input=str(data[0]), output=str(tmp_path / name), prm=prm, ref=ref, beta=BETA,
                       logprob_cache=str(tmp_path / "c.sqlite"), precision="fp32", progress=False, **kw)


def test_score_command_identity(data, tok, tmp_path, tiny_model, tiny_model_b):
    out = score(cfg(data, tmp_path, tiny_model_b, tiny_model, "out.jsonl", token_rewards=True))
    recs = read_jsonl(out)
    samples = data[1]
    assert len(recs) == len(samples) == 6
    assert recs[4]["id"] == "pb-0" and recs[4]["steps"] == PROCESSBENCH["steps"]  # ProcessBench record kept
    assert [len(r["step_rewards"]) for r in recs[4:]] == [3, 3]
    for rec, (prompt, response, steps) in zip(recs, samples):
        check_record(rec, expected(tok, tiny_model_b, tiny_model, prompt, response, steps))
    assert any(abs(r["scores"]["sum"]) > 1e-3 for r in recs)  # the two models really differ
    assert (tmp_path / "out.jsonl.config.json").exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_reference_free(data, tok, tmp_path, tiny_model_b):
    c = cfg(data, tmp_path, tiny_model_b, None, "free.jsonl", reference_free=True)
    recs = read_jsonl(score(c))
    for rec, (prompt, response, steps) in zip(recs, data[1]):
        exp = expected(tok, tiny_model_b, None, prompt, response, steps)
        check_record(rec, exp, with_tokens=False)
        assert "token_rewards" not in rec
        assert exp["total"] < 0  # beta * sum(log pi) of a random model


def test_python_api(data, tok, tmp_path, tiny_model, tiny_model_b):
    prm = ImplicitPRM.from_pretrained(tiny_model_b, ref=tiny_model, precision="fp32", logprob_cache=str(tmp_path / "c.sqlite"),
                                      beta=BETA)
    for prompt, response, steps in data[1][3:]:
        exp = expected(tok, tiny_model_b, tiny_model, prompt, response, steps)
        got = prm.score(prompt, steps) if steps is not None else prm.score(prompt, response)
        check_record(with_spans(got, exp), exp, with_tokens=False)
    # the string form of a pre-split response splits at its blank lines: the same steps here
    prompt, response, steps = data[1][4]
    assert prm.score(prompt, response)["step_rewards"] == pytest.approx(prm.score(prompt, steps)["step_rewards"],
                                                                        abs=1e-6)
    # no beta given and no implicit_prm.json next to the PRM: the default beta
    assert ImplicitPRM.from_pretrained(tiny_model_b, ref=tiny_model, precision="fp32", logprob_cache="none").beta \
        == DEFAULT_BETA


def _rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM ref").fetchone()[0]


def test_reference_cache_is_reused_by_a_new_prm(data, tok, tmp_path, monkeypatch, tiny_model, tiny_model_b,
                                               third_model):
    passes, loads = [], []
    real_pass, real_load = reference.response_logprobs, reference.load_model
    monkeypatch.setattr(reference, "response_logprobs",
                        lambda model, encs, *a, **k: passes.append(len(encs)) or real_pass(model, encs, *a, **k))
    monkeypatch.setattr(reference, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    samples = data[1]

    score(cfg(data, tmp_path, tiny_model_b, tiny_model, "first.jsonl"))
    assert passes == [len(samples)] and len(loads) == 1
    n_rows = _rows(tmp_path / "c.sqlite")
    assert n_rows == 2 * len(samples)  # the reference's log-probs, and the PRM's own (kept for re-scoring)

    # a new PRM against the same reference: no reference load, no reference pass; only its own rows are added
    recs = read_jsonl(score(cfg(data, tmp_path, third_model, tiny_model, "second.jsonl", token_rewards=True)))
    assert passes == [len(samples)] and len(loads) == 1
    assert _rows(tmp_path / "c.sqlite") == n_rows + len(samples)
    for rec, (prompt, response, steps) in zip(recs, samples):
        check_record(rec, expected(tok, third_model, tiny_model, prompt, response, steps))

    # the Python API shares the same cache
    prm = ImplicitPRM.from_pretrained(third_model, ref=tiny_model, precision="fp32", logprob_cache=str(tmp_path / "c.sqlite"),
                                      beta=BETA)
    prompt, response, steps = samples[4]
    exp = expected(tok, third_model, tiny_model, prompt, response, steps)
    check_record(with_spans(prm.score(prompt, steps), exp), exp, with_tokens=False)
    assert passes == [len(samples)] and len(loads) == 1


def test_ref_equal_to_prm_gives_zero_rewards(data, tmp_path, tiny_model):
    recs = read_jsonl(score(cfg(data, tmp_path, tiny_model, tiny_model, "zero.jsonl", token_rewards=True)))
    for rec in recs:
        assert rec["step_rewards"] == pytest.approx([0.0] * len(rec["step_rewards"]), abs=1e-5)
        assert rec["token_rewards"] == pytest.approx([0.0] * len(rec["token_rewards"]), abs=1e-5)


def test_rescoring_a_prm_reference_free_needs_no_forward(data, tok, tmp_path, monkeypatch, tiny_model, tiny_model_b):
    """The PRM pass keeps the PRM's own log-probs: scoring it again reference-free (beta * log pi_theta) is free."""
    import implicit_prm.scoring.implicit as prm_mod

    score(cfg(data, tmp_path, tiny_model_b, tiny_model, "with_ref.jsonl"))
    calls = []
    real = prm_mod.response_logprobs
    monkeypatch.setattr(prm_mod, "response_logprobs",
                        lambda model, encs, *a, **k: calls.append(len(encs)) or real(model, encs, *a, **k))
    recs = read_jsonl(score(cfg(data, tmp_path, tiny_model_b, None, "no_ref.jsonl", reference_free=True,
                                token_rewards=True)))
    assert calls == [0]  # every response came from the cache
    for rec, (prompt, response, steps) in zip(recs, data[1]):
        check_record(rec, expected(tok, tiny_model_b, None, prompt, response, steps))
