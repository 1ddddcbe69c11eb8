"""The scorer interface is written down once (scoring/protocol.py): every scorer says what it is through its
members, and the text-level methods (`score`, `score_samples`) give the same records as encoding and scoring by
hand. Also the public API names the README uses."""
from __future__ import annotations

import dataclasses

import pytest

import implicit_prm
from implicit_prm.data.formats import Sample
from implicit_prm.flops.counting import ModelShape, compute_params
from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.scoring.load import load_scorer
from implicit_prm.scoring.protocol import LocalScorer
from implicit_prm.scoring.remote import RemoteScorer
from implicit_prm.scoring.settings import ScorerSettings


def test_public_api_names_resolve_to_their_modules():
    from implicit_prm.data.benchmarks import load_problems
    from implicit_prm.training.loop import train

    assert implicit_prm.ImplicitPRM is ImplicitPRM and implicit_prm.load_scorer is load_scorer
    assert implicit_prm.train is train and implicit_prm.load_problems is load_problems
    for name in implicit_prm.__all__:
        assert getattr(implicit_prm, name) is not None
    with pytest.raises(AttributeError):
        implicit_prm.no_such_name  # noqa: B018


def test_local_scorers_must_implement_every_member():
    class Half(LocalScorer):  # encodes, but says nothing about its schema, reference, key or FLOPs
        format = "implicit"

        def encode(self, samples, split="auto", step_regex=None, separator="\n\n"):
            return []

        def score_encoded(self, encs, acc=None, show=False, token_rewards=False, on_record=None):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_implicit_prm_describes_itself_through_the_protocol(tiny_model, tiny_model_b):
    prm = load_scorer(ScorerSettings(prm=tiny_model_b, ref=tiny_model, beta=0.5, precision="fp32"), device="cpu")
    assert isinstance(prm, LocalScorer) and prm.format == "implicit"
    assert prm.reference == tiny_model and prm.lora is False
    assert prm.schema == {"name": "implicit-prm/scored", "version": 1, "scorer": "implicit", "scale": "log_ratio",
                          "beta": 0.5, "reference_free": False}
    assert prm.resolved_settings() == {"beta": 0.5, "template": "auto", "ref": tiny_model, "system_prompt": None}
    shape = prm.flops_shape
    assert isinstance(shape, ModelShape) and shape.name == tiny_model_b
    assert shape.params == compute_params(prm.model.lm)
    # the text-level methods are the encode + score_encoded path, record for record
    steps = ["Step 1: 2 + 3 = 5", "Step 2: 5 * 2 = 10"]
    by_hand = prm.score_encoded(prm.encode([Sample.api("q", "\n\n".join(steps), steps)]))[0]
    assert prm.score("q", steps) == by_hand
    assert prm.score_samples([Sample.api("q", "\n\n".join(steps), steps)]) == [by_hand]
    assert len(by_hand["step_rewards"]) == 2
    # reference-free: no reference, and the schema says so
    free = load_scorer(tiny_model_b, reference_free=True, precision="fp32", device="cpu")
    assert free.reference is None and free.schema["reference_free"] is True


def test_load_scorer_takes_settings_or_a_path_and_refuses_unknown_ones(tiny_model):
    with pytest.raises(TypeError, match="unknown settings"):
        load_scorer(tiny_model, precison="fp32")
    s = ScorerSettings(prm=tiny_model, reference_free=True)
    assert s.implicit_only and not ScorerSettings(prm=tiny_model).implicit_only
    # the commands' configs extend the one group: the same fields, top-level
    from implicit_prm.scoring.score import ScoreConfig
    from implicit_prm.search.run import SearchConfig
    from implicit_prm.serve.app import ServeConfig

    group = {f.name for f in dataclasses.fields(ScorerSettings)}
    for cfg in (ScoreConfig, SearchConfig, ServeConfig):
        assert group <= {f.name for f in dataclasses.fields(cfg)}, cfg.__name__


def test_remote_scorer_is_a_text_scorer():
    remote = RemoteScorer("http://127.0.0.1:9")
    assert remote.format == "remote"
    assert not isinstance(remote, LocalScorer)  # it encodes nothing here: no tokenizer, no FLOPs shape
