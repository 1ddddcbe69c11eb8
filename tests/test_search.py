"""Search: beam and DVTS selection on a hand-worked tree with fixed rewards; incremental implicit scoring against
one pass over the same ids and against `score` on the decoded text, with the real (SmolLM2) tokenizer."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED as SHARED_DATA

from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.search.scoring import IncrementalImplicitScorer, WholeTextScorer
from implicit_prm.search.strategies import Node, Proposal, Search, SearchLedgers, run_strategy
from implicit_prm.steps.encoding import Encoded

# A binary tree of depth 3: node "" has children "a", "b"; "a" has "aa", "ab"; ... Proposal j of a node is child j
# (mod 2). Each node's step reward is fixed; scores aggregate by min.
REWARD = {"a": 0.9, "b": 0.5, "aa": -0.2, "ab": 0.4, "ba": 0.8, "bb": 0.6,
          "aaa": 0.0, "aab": 0.1, "aba": 0.7, "abb": -0.5, "baa": 0.9, "bab": 0.3, "bba": 0.2, "bbb": 0.95}


class TreePolicy:
    def root(self, prompt, ledger=None):
        return ""

    def propose(self, prompt, states, k, seed, ledger=None):
        return [[Proposal(s + "ab"[j % 2], len(s) + 1 == 3, s + "ab"[j % 2], 1) for j in range(k)] for s in states]


class TreeScorer:
    prm_tokens = 0

    def root(self, prompt, ledger=None):
        return None

    def extend(self, prompt, parents, proposals, ledger=None):
        return [(p.rewards + [REWARD[q.text]], None) for p, q in zip(parents, proposals)]


def _search(strategy, n, width):
    s = Search("q", TreePolicy(), TreeScorer(), agg="min", max_steps=3)
    best, final = run_strategy(s, strategy, n, width)
    return best, final, s


def test_beam_keeps_the_best_partial_beams_on_a_hand_worked_tree():
    """n 4, width 2: round 1 samples a, b, a, b (min 0.9, 0.5, 0.9, 0.5) and keeps the 2 best: a and a (ties keep
    the earlier). Each gets 2 children: aa (min -0.2), ab (0.4), aa, ab; keeps ab, ab. Their children aba (min 0.4),
    abb (-0.5) finish: the best finished is aba, although bbb would have scored higher on the other branch."""
    best, final, s = _search("beam", 4, 2)
    assert best.steps == ["a", "ab", "aba"] and best.rewards == [0.9, 0.4, 0.7]
    assert s.score(best) == pytest.approx(0.4)
    assert [e["step"] for e in s.explored] == ["a", "b", "a", "b", "aa", "ab", "aa", "ab",
                                               "aba", "abb", "aba", "abb"]


def test_dvts_follows_each_subtrees_best_path():
    """n 4, width 2: 2 subtrees, each expanding its beam by 2 and keeping the better: both take a (0.9 > 0.5),
    then ab (0.4 > -0.2), then aba (0.7 > -0.5): min 0.4."""
    best, final, s = _search("dvts", 4, 2)
    assert [b.steps for b in final] == [["a", "ab", "aba"]] * 2
    assert len(s.explored) == 12 and best.rewards == [0.9, 0.4, 0.7]


def test_best_of_n_samples_independent_paths():
    """n 2: the two root samples a and b, each extended by its first proposal: a, aa, aaa (min -0.2) and b, ba,
    baa (min 0.5): b's path wins."""
    best, final, s = _search("best-of-n", 2, 1)
    assert [b.steps[-1] for b in final] == ["aaa", "baa"]
    assert best.steps == ["b", "ba", "baa"]


STEPS = ["Start with 3 apples, and 3 + 4 = 7.", "Then 7 * 2 = 14.", "The answer is 14."]


@pytest.fixture(scope="module")
def prm(tiny_model, tiny_model_b):
    return ImplicitPRM.from_pretrained(tiny_model_b, ref=tiny_model, beta=0.5, precision="fp32", device="cpu")


def _walk(scorer, prm, steps, ids=False):
    s = Search("Janet has 3 apples. How many?", TreePolicy(), scorer, max_steps=10)
    node = s.root
    for k, text in enumerate(steps):
        done = k == len(steps) - 1
        step_ids = prm.tok.encode(text + ("" if done else "\n\n"), add_special_tokens=False) if ids else None
        prop = Proposal(text, done, None, 0, step_ids)
        (rewards, state), = scorer.extend(s.prompt, [node], [prop])
        node = Node(k, node.id, node.steps + [text], rewards, done, None, state)
    return s.prompt, node


def test_incremental_text_steps_equal_score_on_the_text(prm):
    """Steps given as text: the incremental rewards are `score`'s on the same text, although each join re-tokenizes
    (SmolLM2 writes a trailing "\\n\\n" as one token, "\\n\\nThen" as two newlines and a word)."""
    tok = prm.tok
    assert len(tok.encode("7.\n\n", add_special_tokens=False)) != len(tok.encode("7.\n\nThen", add_special_tokens=False)) - 1
    scorer = IncrementalImplicitScorer(prm)
    prompt, node = _walk(scorer, prm, STEPS)
    want = prm.score(prompt, STEPS)
    assert node.rewards == pytest.approx(want["step_rewards"], abs=1e-4)
    assert np.isclose(sum(node.rewards), want["q_values"][-1], atol=1e-4)


def test_incremental_ids_equal_one_pass_over_the_same_ids(prm):
    """Steps given as token ids (an LM policy's own tokens, each step tokenized alone): the rewards equal one pass
    over those ids, and differ from re-tokenizing the decoded text by the joins' tokens."""
    scorer = IncrementalImplicitScorer(prm)
    prompt, node = _walk(scorer, prm, STEPS, ids=True)
    st = node.scorer_state
    enc = Encoded(prm.encoder.prompt_ids(prompt), st.response_ids, st.token_steps, len(STEPS))
    one_pass = prm.score_encoded([enc])[0]
    assert node.rewards == pytest.approx(one_pass["step_rewards"], abs=1e-4)
    text = prm.score(prompt, STEPS)
    assert st.response_ids != prm.encoder.encode(prompt, "\n\n".join(STEPS), [(0, 1)]).response_ids
    assert not np.allclose(node.rewards, text["step_rewards"], atol=1e-4)


def test_beams_share_the_prefix_cache_and_whole_text_rescoring_agrees(prm):
    """Two children of one parent run as one batch from the parent's cache, which stays unchanged; the whole-text
    scorer gives the same rewards."""
    inc, whole = IncrementalImplicitScorer(prm), WholeTextScorer(prm)
    prompt, node = _walk(inc, prm, STEPS[:1])
    before = [k.clone() for k, _ in node.scorer_state.kv[0]]
    props = [Proposal("Then 7 * 2 = 14.", False, None, 0), Proposal("Then 7 + 2 = 9. The answer is 9.", True, None, 0)]
    got = inc.extend(prompt, [node, node], props)
    assert all(np.array_equal(a, k) for a, (k, _) in zip(before, node.scorer_state.kv[0]))
    ref = whole.extend(prompt, [node, node], props)
    for (a, _), (b, _) in zip(got, ref):
        assert a == pytest.approx(b, abs=1e-4)


def test_search_command_on_builtin_problems_resumes(tmp_path, tiny_model, builtin_data):
    """The command end to end with the solver policy and a tiny PRM: one record per problem, every explored step
    logged, the budget counted, graded; a second run with the partial file resumes without searching again."""
    from implicit_prm.search.run import SearchConfig, search

    cfg = SearchConfig(problems=str(builtin_data), output=str(tmp_path / "s.jsonl"), prm=tiny_model,
                       reference_free=True, strategy="beam", n=4, beam_width=2, n_problems=3, precision="fp32",
                       progress=False)
    search(cfg)
    recs = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(recs) == 3
    from implicit_prm.models.chat import chat_text
    from implicit_prm.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    for r in recs:
        assert r["explored"] and r["budget"]["generated_tokens"] > 0 and isinstance(r["correct"], bool)
        # The solver's tokens as SmolLM2-135M generating them (P = 134,515,008 with its head; 30 layers, attention
        # width 9 x 64): the chat-formatted prompt once, then every explored step after its own prefix.
        b, prompt = r["budget"], len(tok(chat_text(tok, r["prompt"], None), add_special_tokens=False)["input_ids"])
        tokens, context = prompt, prompt * (prompt + 1) // 2
        for e in r["explored"]:
            before = prompt + sum(x["tokens"] for x in _path(r["explored"], e["id"])[:-1])
            tokens += e["tokens"]
            context += sum(before + t for t in range(1, e["tokens"] + 1))
        assert b["generated_tokens"] == tokens - prompt
        assert b["policy_flops"] == 2 * 134_515_008 * tokens + 2 * 30 * 576 * context
        assert b["prm_flops"] > 0
        assert r["steps"] == [e["step"] for e in _path(r["explored"], r["chosen"])]
        chosen = _path(r["explored"], r["chosen"])[-1]  # earlier steps' rewards move a little when a join
        assert r["step_rewards"][-1] == pytest.approx(chosen["reward"])  # re-tokenizes; the last and q are final
        assert r["q_values"][-1] == pytest.approx(chosen["q_value"]) == pytest.approx(sum(r["step_rewards"]))
    ledgers = {name: json.loads((tmp_path / f"s.jsonl{name}.flops.json").read_text()) for name in ("", ".policy")}
    prm_led, pol_led = ledgers[""], ledgers[".policy"]
    assert prm_led["kinds"]["search_prm"]["tokens"] == sum(r["budget"]["prm_tokens"] for r in recs)
    assert prm_led["total_flops"] == sum(r["budget"]["prm_flops"] for r in recs)
    assert pol_led["total_flops"] == sum(r["budget"]["policy_flops"] for r in recs) and pol_led["simulated"]
    first = [{k: v for k, v in r.items() if k != "wall_s"} for r in recs]
    (tmp_path / "s.jsonl").unlink()
    import implicit_prm.search.run as run_mod

    calls, real = [], run_mod.search_problem

    def killed_on_the_second(cfg, problem, policy, scorer, ledgers=None):
        calls.append(problem.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, problem, policy, scorer, ledgers)

    run_mod.search_problem = killed_on_the_second
    try:
        with pytest.raises(KeyboardInterrupt):
            search(cfg)
        assert not (tmp_path / "s.jsonl").exists() and (tmp_path / "s.jsonl.partial").exists()
        calls.clear()
        run_mod.search_problem = lambda *a: (calls.append(a[1].id), real(*a))[1]
        search(cfg)
    finally:
        run_mod.search_problem = real
    assert len(calls) == 2  # the first problem came from the partial file
    again = [{k: v for k, v in json.loads(line).items() if k != "wall_s"}
             for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert again == first  # deterministic given the seed
    for name, led in ledgers.items():  # the resumed run's ledgers count the first problem from the partial file
        assert json.loads((tmp_path / f"s.jsonl{name}.flops.json").read_text()) == led


def _path(explored, node_id):
    by_id = {e["id"]: e for e in explored}
    out = []
    while node_id is not None:
        out.append(by_id[node_id])
        node_id = by_id[node_id]["parent"]
    return out[::-1]


def prm_shape(prm):
    import dataclasses

    return dataclasses.replace(prm.flops_shape, name="tiny")


def test_hf_policy_steps_end_at_the_separator_and_share_ids(prm, tiny_model):
    """An LM policy (a tiny random model) proposes steps that stop after the separator or at the token limit; with
    its ids shared, the incremental rewards equal one pass over exactly the generated tokens."""
    from transformers import AutoModelForCausalLM

    from implicit_prm.models.loading import load_tokenizer
    from implicit_prm.search.policies import HFPolicy

    tok = load_tokenizer(tiny_model)
    tok.padding_side = "left"
    policy = HFPolicy(AutoModelForCausalLM.from_pretrained(tiny_model).eval(), tok, temperature=1.0,
                      max_step_tokens=6, share_ids=True)
    from implicit_prm.flops.counting import ModelShape
    from implicit_prm.flops.ledger import Ledger

    scorer = IncrementalImplicitScorer(prm)
    ledgers = SearchLedgers(Ledger(ModelShape("tiny", 1000, 2, 4), "search"), Ledger(prm_shape(prm), "search"))
    contexts, propose = [], policy.propose

    def spy(prompt, states, k, seed, ledger=None):  # the contexts the policy is given, each sampled k times
        contexts.extend(len(x) for x in states for _ in range(k))
        return propose(prompt, states, k, seed, ledger)

    policy.propose = spy
    s = Search("Janet has 3 apples. How many?", policy, scorer, max_steps=3, seed=1, ledgers=ledgers)
    best, final = run_strategy(s, "best-of-n", 2, 1)
    assert len(final) == 2 and all(len(b.steps) <= 3 for b in final)
    for e in s.explored:
        assert 1 <= e["tokens"] <= 7  # at most max_step_tokens, plus an EOS
    # The ledgers count what ran: each sample's prefix prefilled again, then its tokens; the PRM and reference
    # ran every token the scorer counted.
    g, root = ledgers.policy.kinds["search_generation"], len(policy.root(s.prompt))
    assert g.generated_tokens == sum(e["tokens"] for e in s.explored)
    assert g.prompt_tokens == sum(contexts)  # a context: the prompt, the steps so far, a cut step's separator
    assert sum(contexts) >= sum(root + sum(x["tokens"] for x in _path(s.explored, e["id"])[:-1]) for e in s.explored)
    kinds = ledgers.prm.kinds
    assert kinds["search_prm"].tokens == kinds["search_reference"].tokens == scorer.prm_tokens // 2
    st = best.scorer_state
    enc = Encoded(prm.encoder.prompt_ids(s.prompt), st.response_ids, st.token_steps, len(best.steps))
    assert best.rewards == pytest.approx(prm.score_encoded([enc])[0]["step_rewards"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "gsm8k").is_dir(), reason="needs ../shared/data")
def test_search_with_the_embedded_model_on_gsm8k(tmp_path):
    """The plumbing on the real model and real problems: SmolLM2 proposes steps of GSM8K solutions and scores them
    reference-free; it rarely solves them, so only the records are checked."""
    from implicit_prm.search.run import SearchConfig, search

    cfg = SearchConfig(problems=str(SHARED_DATA / "gsm8k" / "test.jsonl"), output=str(tmp_path / "g.jsonl"),
                       prm="smollm2-135m", reference_free=True, policy="smollm2-135m", strategy="beam", n=2,
                       beam_width=1, max_steps=3, max_step_tokens=48, n_problems=2, precision="fp32",
                       progress=False)
    search(cfg)
    recs = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    for r in recs:
        assert 1 <= len(r["steps"]) <= 3 and len(r["explored"]) >= 2 and "correct" in r
        assert r["budget"]["generated_tokens"] >= len(r["steps"])


def test_parents_of_different_lengths_batch_together(prm):
    """One batch holds children of parents whose caches differ in length (left-padded, masked, true positions):
    each child's rewards equal `score` on its text."""
    inc = IncrementalImplicitScorer(prm)
    prompt, short = _walk(inc, prm, ["3 + 4 = 7."])
    _, long = _walk(inc, prm, ["Start with 3 apples; she buys 4 more, and 3 + 4 = 7 apples in all."])
    props = [Proposal("The answer is 7.", True, None, 0), Proposal("Then 7 * 2 = 14.", False, None, 0),
             Proposal("The answer is 7.", True, None, 0)]
    got = inc.extend(prompt, [short, long, long], props)
    for (rewards, _), node, prop in zip(got, [short, long, long], props):
        want = prm.score(prompt, node.steps + [prop.text + ("" if prop.done else "\n\n")])
        assert rewards == pytest.approx(want["step_rewards"], abs=1e-4)


def test_each_problem_draws_its_own_samples():
    """One random stream for every problem made the solver err at the same steps of all of them (a single-sample
    accuracy that moved as one draw); each problem's seed now comes from --seed and the problem."""
    from implicit_prm.data.benchmarks import Problem
    from implicit_prm.search.run import problem_seed

    a, b = Problem("p0", "Start with 3.", "3", "x"), Problem("p1", "Start with 4.", "4", "x")
    assert problem_seed(0, a) == problem_seed(0, Problem("p0", "Start with 3.", "3", "x"))
    assert len({problem_seed(0, a), problem_seed(0, b), problem_seed(1, a)}) == 3


def test_a_step_cut_at_the_token_limit_ends_with_its_separator(tiny_model):
    """A step cut at max_step_tokens ends there: the policy's next context and the ids the PRM scores hold the
    separator after it, as the solution's text (steps joined by the separator) reads."""
    from transformers import AutoModelForCausalLM

    from implicit_prm.models.loading import load_tokenizer
    from implicit_prm.search.policies import HFPolicy

    tok = load_tokenizer(tiny_model)
    policy = HFPolicy(AutoModelForCausalLM.from_pretrained(tiny_model).eval(), tok, temperature=1.0,
                      max_step_tokens=2, share_ids=True)
    sep = tok.encode("\n\n", add_special_tokens=False)
    root = policy.root("Janet has 3 apples. How many?")
    props = policy.propose("Janet has 3 apples. How many?", [root], 4, seed=0)[0]
    cut = [p for p in props if not p.done and p.n_tokens == 2 and not tok.decode(p.ids[:2]).endswith("\n\n")]
    assert cut, "a random tiny model should hit the 2-token limit"
    for p in cut:
        assert p.ids[2:] == sep and p.state == root + p.ids and p.n_tokens == 2  # generated: 2; then the separator
