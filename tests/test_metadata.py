"""PRM metadata (implicit_prm.json): typed round trip, clear errors, and every field read back when scoring."""
from __future__ import annotations

import json
import shutil

import pytest

from implicit_prm.core.errors import ConfigError, InputError
from implicit_prm.models.metadata import METADATA_FILE, PRMMetadata, read_metadata, write_metadata
from implicit_prm.scoring.implicit import ImplicitPRM


def _meta(**kw) -> PRMMetadata:
    base = dict(beta=0.3, reference_model="ref-model", base_model="base-model", reference_fingerprint="abc",
                template="plain", system_prompt="", objective="dpo", lora=False, precision="fp32",
                step_separator="\n", max_length=512)
    return PRMMetadata(**{**base, **kw})


def test_round_trip_and_description(tmp_path):
    write_metadata(tmp_path, _meta())
    back = read_metadata(tmp_path)
    assert back == _meta()
    assert back.describe() == ("dpo objective, beta 0.3, full, trained in fp32 with max_length 512 and steps joined "
                               "by '\\n'")
    assert read_metadata(tmp_path / "nowhere") is None  # any causal LM: no metadata


def test_unknown_keys_are_ignored_and_bad_values_named(tmp_path):
    (tmp_path / METADATA_FILE).write_text(json.dumps({"beta": 0.1, "reference_model": "r", "base_model": "b",
                                                      "written_by_a_newer_version": 1}))
    assert read_metadata(tmp_path).beta == 0.1
    (tmp_path / METADATA_FILE).write_text(json.dumps({"beta": "high", "reference_model": "r", "base_model": "b"}))
    with pytest.raises(ConfigError, match=r"implicit_prm.json: field 'beta' must be a number"):
        read_metadata(tmp_path)
    (tmp_path / METADATA_FILE).write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_metadata(tmp_path)


def test_scoring_reads_defaults_and_warns_on_another_reference(tmp_path, tiny_model, tiny_model_b, capsys):
    """beta, template and system prompt come from the metadata; a reference whose weights differ from the
    recorded fingerprint is named in a warning; the informational fields are printed."""
    prm = tmp_path / "prm"
    shutil.copytree(tiny_model_b, prm)
    write_metadata(prm, _meta(reference_model=tiny_model, base_model=tiny_model, reference_fingerprint="0" * 20))
    api = ImplicitPRM.from_pretrained(str(prm), precision="fp32", logprob_cache="none")
    assert (api.beta, api.template, api.system_prompt, api.ref) == (0.3, "plain", "", tiny_model)
    rec = api.score("What is 1 + 1?", ["1 + 1 = 2.", "The answer is 2."])
    assert len(rec["step_rewards"]) == 2
    out = capsys.readouterr().out
    assert "dpo objective, beta 0.3, full, trained in fp32 with max_length 512" in out
    assert "warning: the reference" in out and "0" * 20 in out

    # the right fingerprint: no warning; an explicit beta wins over the recorded one
    right = ImplicitPRM.from_pretrained(str(prm), precision="fp32", logprob_cache="none")
    write_metadata(prm, _meta(reference_model=tiny_model, base_model=tiny_model,
                              reference_fingerprint=right.reference_table([right.encoder.encode("q", "a", [(0, 1)])],
                                                                    _one(), False).model_key))
    again = ImplicitPRM.from_pretrained(str(prm), beta=0.7, precision="fp32", logprob_cache="none")
    capsys.readouterr()
    again.score("What is 1 + 1?", ["1 + 1 = 2."])
    assert again.beta == 0.7 and "warning" not in capsys.readouterr().out


def _one():
    from implicit_prm.core.distributed import SingleProcess

    return SingleProcess("cpu")
