"""TRL / HF Trainer names: `--learning_rate`, `learning_rate:` in a config file and the snake_case spelling of every
flag reach the same fields as our own names; two names of one setting at once, and TRL keys we lack, are refused."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest
import yaml

from implicit_prm.cli import VERBS, _resolve, build_parser, main
from implicit_prm.core.config import add_arguments, field, from_args, from_mapping
from implicit_prm.core.errors import ConfigError
from implicit_prm.scoring.score import ScoreConfig
from implicit_prm.search.run import SearchConfig
from implicit_prm.serve.app import ServeConfig
from implicit_prm.training.config import TrainConfig

# a TRL DPO recipe as TRL's examples write them (`5.0e-7` and `5e-7` both occur; YAML 1.1 reads the second as a string)
TRL_DPO_YAML = """\
model_name_or_path: Qwen/Qwen2-0.5B-Instruct
dataset_name: trl-lib/ultrafeedback_binarized
output_dir: Qwen2-0.5B-DPO
learning_rate: 5e-7
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
num_train_epochs: 3
lr_scheduler_type: constant_with_warmup
beta: 0.1
bf16: true
use_peft: true
lora_r: 32
lora_alpha: 16
save_steps: 100
max_steps: 200
"""

# worked out by hand from the YAML: each TRL key -> our field, constant_with_warmup -> constant (ours warms up),
# bf16 true -> precision bf16, the dataset name -> an `hf:` data name; everything else keeps our default
EXPECTED = TrainConfig(model="Qwen/Qwen2-0.5B-Instruct", data="hf:trl-lib/ultrafeedback_binarized",
                       output="Qwen2-0.5B-DPO", lr=5e-7, batch_size=2, grad_accum=8, epochs=3, schedule="constant",
                       beta=0.1, precision="bf16", lora=True, lora_r=32, lora_alpha=16, checkpoint_every=100,
                       max_steps=200)

FLAGS = [("model_name_or_path", "Qwen/Qwen2-0.5B-Instruct"), ("dataset_name", "trl-lib/ultrafeedback_binarized"),
         ("output_dir", "Qwen2-0.5B-DPO"), ("learning_rate", "5e-7"), ("per_device_train_batch_size", "2"),
         ("gradient_accumulation_steps", "8"), ("num_train_epochs", "3"),
         ("lr_scheduler_type", "constant_with_warmup"), ("beta", "0.1"), ("bf16", None), ("use_peft", None),
         ("lora_r", "32"), ("lora_alpha", "16"), ("save_steps", "100"), ("max_steps", "200")]


def parse(argv: list[str]):
    """What `implicit-prm <argv>` would run with."""
    cls, _ = _resolve(VERBS[argv[0]])
    return from_args(cls, build_parser(argv).parse_args(argv))


def trl_argv(spell) -> list[str]:
    argv = ["train"]
    for name, value in FLAGS:
        argv += ["--" + spell(name)] + ([value] if value is not None else [])
    return argv


def test_a_trl_dpo_yaml_gives_the_train_config(tmp_path):
    data = yaml.safe_load(TRL_DPO_YAML)
    assert data["learning_rate"] == "5e-7"  # the string YAML 1.1 makes of it, read as a number all the same
    cfg = from_mapping(TrainConfig, data, "trl.yaml")
    assert cfg == EXPECTED
    assert (cfg.lr, cfg.precision, cfg.data, cfg.lora, cfg.beta) == (5e-7, "bf16", "hf:trl-lib/ultrafeedback_binarized",
                                                                      True, 0.1)
    path = tmp_path / "dpo.yaml"
    path.write_text(TRL_DPO_YAML, encoding="utf-8")
    assert parse(["train", "--config", str(path)]) == EXPECTED  # through the CLI's --config


@pytest.mark.parametrize("spell", [lambda n: n, lambda n: n.replace("_", "-")], ids=["snake", "kebab"])
def test_the_trl_names_as_flags_in_both_spellings(spell):
    assert parse(trl_argv(spell)) == EXPECTED


@pytest.mark.parametrize("given,want", [
    ({"bf16": False}, {"precision": "fp32"}),
    ({"lr_scheduler_type": "cosine"}, {"schedule": "cosine"}),
    ({"lr_scheduler_type": "constant"}, {"schedule": "constant"}),
    ({"dataset_name": "hf:org/set"}, {"data": "hf:org/set"}),  # already an hf: name: not prefixed twice
    ({"use_peft": False, "num_train_epochs": 2}, {"lora": False, "epochs": 2}),
])
def test_value_transforms(given, want):
    required = {k: v for k, v in {"data": "d", "output": "o"}.items() if k not in want}  # not given twice
    cfg = from_mapping(TrainConfig, {**required, **given})
    assert {k: getattr(cfg, k) for k in want} == want


@pytest.mark.parametrize("argv,want", [
    (["--no-bf16"], "fp32"), (["--no_bf16"], "fp32"), (["--bf16"], "bf16"), (["--dtype", "bf16"], "bf16")])
def test_bf16_flags(argv, want):
    assert parse(["train", "--data", "d", "--output", "o", *argv]).precision == want


@pytest.mark.parametrize("mapping,phrases", [
    ({"lr_scheduler_type": "cosine_with_restarts"},
     ["field 'lr_scheduler_type' (the TRL/HF name of 'schedule') must be one of",
      "['linear', 'cosine', 'constant', 'constant_with_warmup']", "'cosine_with_restarts'"]),
    ({"bf16": "yes"}, ["field 'bf16' must be true or false, got 'yes'"]),
    ({"learning_rate": "fast"}, ["field 'learning_rate' must be a number, got 'fast'"]),
])
def test_bad_values_under_trl_names_name_the_key(mapping, phrases):
    with pytest.raises(ConfigError) as e:
        from_mapping(TrainConfig, {"data": "d", "output": "o", **mapping}, "trl.yaml")
    for phrase in phrases:
        assert phrase in str(e.value)


def test_two_names_of_one_setting_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        from_mapping(TrainConfig, {"data": "d", "output": "o", "lr": 1e-5, "learning_rate": 5e-7}, "both.yaml")
    assert ("both.yaml: fields 'learning_rate' and 'lr' are the same setting ('learning_rate' is the TRL/HF name "
            "of 'lr'); give one") in str(e.value)
    base = ["train", "--data", "d", "--output", str(tmp_path / "run")]
    for flags, phrase in [(["--lr", "1e-5", "--learning_rate", "5e-7"], "fields 'learning_rate' and 'lr'"),
                          (["--learning-rate", "5e-7", "--lr", "1e-5"], "fields 'learning_rate' and 'lr'"),
                          (["--dtype", "fp32", "--bf16"], "fields 'dtype' and 'bf16' are the same setting"),
                          (["--precision", "fp32", "--dtype", "fp32"], "fields 'dtype' and 'precision'")]:
        assert main([*base, *flags]) == 2, flags
        assert f"command line: {phrase}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_flag_overrides_the_file_whatever_name_either_uses(tmp_path):
    path = tmp_path / "dpo.yaml"
    path.write_text(TRL_DPO_YAML, encoding="utf-8")
    cfg = parse(["train", "--config", str(path), "--lr", "1e-6", "--precision", "fp32", "--data", "d.jsonl"])
    assert (cfg.lr, cfg.precision, cfg.data) == (1e-6, "fp32", "d.jsonl")
    path.write_text("data: d\noutput: o\nlr: 0.001\n", encoding="utf-8")
    assert parse(["train", "--config", str(path), "--learning_rate", "0.002"]).lr == 0.002


def test_other_trl_keys_are_refused_listing_the_known_ones(tmp_path, capsys):
    path = tmp_path / "dpo.yaml"
    path.write_text(TRL_DPO_YAML + "warmup_steps: 10\ngradient_checkpointing_kwargs:\n  use_reentrant: false\n",
                    encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: unknown field(s) ['gradient_checkpointing_kwargs', 'warmup_steps']; known fields: [" in err
    assert "'lr'" in err and "'warmup_ratio'" in err and "Traceback" not in err


@pytest.mark.parametrize("cls,argv,want", [
    (ScoreConfig, ["score", "--input", "i", "--output", "o", "--prm", "m", "--token_rewards", "--batch_tokens", "512",
                   "--logprob_cache", "none", "--ref_cache", "x"], None),
    (ScoreConfig, ["score", "--input", "i", "--output", "o", "--prm", "m", "--token_rewards", "--batch_tokens", "512",
                   "--reference_free", "--no_progress"],
     dict(token_rewards=True, batch_tokens=512, reference_free=True, progress=False)),
    (SearchConfig, ["search", "--problems", "p", "--output", "o", "--prm", "m", "--beam_width", "2",
                    "--max_step_tokens", "64", "--no_incremental", "--dtype", "fp32"],
     dict(beam_width=2, max_step_tokens=64, incremental=False, precision="fp32")),
    (ServeConfig, ["serve", "--prm", "m", "--batch_window_ms", "2.5", "--max_request_bytes", "1024",
                   "--api_key_env", "K", "--dtype", "bf16"],
     dict(batch_window_ms=2.5, max_request_bytes=1024, api_key_env="K", precision="bf16")),
])
def test_snake_case_flags_of_score_search_and_serve(cls, argv, want, capsys):
    if want is None:  # --logprob_cache with its former name --ref_cache: refused naming both
        assert main(argv) == 2
        assert "fields 'ref_cache' and 'logprob_cache' are the same setting" in capsys.readouterr().err
        return
    cfg = parse(argv)
    assert isinstance(cfg, cls)
    assert {k: getattr(cfg, k) for k in want} == want


def command_configs() -> list[tuple[str, type]]:
    out = []
    for verb, spec in VERBS.items():
        for sub, leaf in (spec.items() if isinstance(spec, dict) else [("", spec)]):
            out.append((f"{verb} {sub}".strip(), _resolve(leaf)[0]))
    return out


@pytest.mark.parametrize("verb,cls", command_configs(), ids=[v for v, _ in command_configs()])
def test_every_name_of_every_command_has_both_spellings(verb, cls):
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    dest = {s: a.dest for a in parser._actions for s in a.option_strings}
    for f in dataclasses.fields(cls):
        names = [f.name, *(a.name for a in f.metadata["aliases"])]
        for name in names:
            assert dest["--" + name] == dest["--" + name.replace("_", "-")] == name, (verb, name)
        if f.name == "precision":  # every command with a precision setting takes the former --dtype too
            assert "dtype" in names, verb


def test_help_says_trl_hf_name_not_formerly():
    text = "".join(build_parser(["train"])._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "(default:1e-05)(TRL/HFname--learning_rate)" in text
    assert "(formerly--dtype)(TRL/HFname--bf16:true->bf16,false->fp32)" in text
    assert "--dataset_nameNAME->hf:NAME" in text
    assert "formerly--learning" not in text


@dataclass
class WithLogging:
    log_every: int = field(10, help="log every K steps", hf=("logging_steps",))  # one line gives a field a TRL name


def test_a_trl_name_is_one_declaration_on_the_field():
    assert from_mapping(WithLogging, {"logging_steps": 5}) == WithLogging(log_every=5)
    parser = argparse.ArgumentParser()
    add_arguments(parser, WithLogging)
    for flag in ("--logging_steps", "--logging-steps", "--log_every", "--log-every"):
        assert from_args(WithLogging, parser.parse_args([flag, "3"])) == WithLogging(log_every=3)
