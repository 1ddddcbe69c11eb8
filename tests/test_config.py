"""One dataclass per command: it makes the flags and --help, reads --config YAML/JSON (flags win), rejects bad
fields with exit code 2, and is saved in full next to each run's outputs."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from implicit_prm.cli import VERBS as CLI_VERBS
from implicit_prm.cli import _resolve, build_parser, main
from implicit_prm.collect.builtin import write_builtin
from implicit_prm.core.config import from_args
from implicit_prm.data.builtin import BuiltinDataConfig
from implicit_prm.scoring.score import ScoreConfig
from implicit_prm.training.config import TrainConfig

VERBS = ["train", "score", "data", "demo", "grade", "eval bon", "eval steps", "report"]


def config_class(verb: str):
    spec = CLI_VERBS
    for word in verb.split():
        spec = spec[word]
    return _resolve(spec)[0]


def subparser(verb: str) -> argparse.ArgumentParser:
    parser = build_parser(verb.split())
    for word in verb.split():
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return parser


def write_config(path: Path, mapping: dict) -> Path:
    text = json.dumps(mapping) if path.suffix == ".json" else yaml.safe_dump(mapping)
    path.write_text(text, encoding="utf-8")
    return path


def squash(text: str) -> str:
    """Text without whitespace: argparse re-wraps help text, breaking lines at spaces and after hyphens."""
    return "".join(text.split())


@pytest.mark.parametrize("verb", VERBS)
def test_every_field_has_a_flag_with_its_help(verb):
    cls = config_class(verb)
    actions = {a.dest: a for a in subparser(verb)._actions if a.help != argparse.SUPPRESS}  # shown in --help
    assert set(actions) - {"help", "config"} == {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        action = actions[f.name]
        assert action.option_strings[0] == "--" + f.name.replace("_", "-")
        assert f.metadata["help"], f"field {f.name} has no help text"
        assert action.help.startswith(f.metadata["help"])


@pytest.mark.parametrize("verb", VERBS)
def test_help_lists_every_help_text(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([*verb.split(), "--help"])
    assert e.value.code == 0
    text = squash(capsys.readouterr().out)
    assert "--configCONFIG" in text
    for f in dataclasses.fields(config_class(verb)):
        assert squash(f.metadata["help"]) in text, f.name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert ("--" + f.name.replace("_", "-")) in text
        if required:
            assert squash(f.metadata["help"]) + "(required)" in text


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_and_flags_override_it(tmp_path, suffix):
    cfg_file = write_config(tmp_path / f"train{suffix}", {
        "data": "d.jsonl", "output": "runs/x", "lr": 0.001, "objective": "dpo", "lora": True, "max_steps": 3,
        "beta": 1, "step_separator": "\n"})
    ns = build_parser(["train", "--config", str(cfg_file), "--lr", "0.5", "--no-lora",
                                    "--output", "runs/y"]).parse_args(["train", "--config", str(cfg_file), "--lr", "0.5", "--no-lora",
                                    "--output", "runs/y"])
    cfg = from_args(TrainConfig, ns)
    assert cfg == TrainConfig(data="d.jsonl", output="runs/y", lr=0.5, objective="dpo", lora=False, max_steps=3,
                              beta=1.0, step_separator="\n")
    assert isinstance(cfg.beta, float)  # an integer in the file is coerced to the field's type

    cfg_file = write_config(tmp_path / f"score{suffix}", {"input": "i.jsonl", "prm": "m", "beta": 0.2,
                                                          "split": "markers", "token_rewards": True})
    ns = build_parser(["score", "--config", str(cfg_file), "--output", "o.jsonl", "--split", "blank"]).parse_args(["score", "--config", str(cfg_file), "--output", "o.jsonl", "--split", "blank"])
    assert from_args(ScoreConfig, ns) == ScoreConfig(input="i.jsonl", output="o.jsonl", prm="m", beta=0.2,
                                                     split="blank", token_rewards=True)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("data: d.jsonl\noutput: o\nlr: 1e-5\n", encoding="utf-8")
    ns = build_parser(["train", "--config", str(cfg_file)]).parse_args(["train", "--config", str(cfg_file)])
    assert from_args(TrainConfig, ns).lr == 1e-5


BASE = {"data": "d.jsonl", "output": "OUT"}
BAD_CONFIGS = [
    ("unknown_field", {**BASE, "warmup_steps": 10}, ["unknown field(s) ['warmup_steps']", "'warmup_ratio'"]),
    ("float_is_string", {**BASE, "lr": "fast"}, ["field 'lr' must be a number", "'fast'"]),
    ("int_is_float", {**BASE, "batch_size": 2.5}, ["field 'batch_size' must be an integer", "2.5"]),
    ("bool_is_string", {**BASE, "lora": "yes"}, ["field 'lora' must be true or false"]),
    ("literal_not_a_choice", {**BASE, "objective": "ppo"}, ["field 'objective' must be one of", "'kto'", "'ppo'"]),
    ("null_not_optional", {**BASE, "lr": None}, ["field 'lr' may not be null"]),
    ("out_of_range", {**BASE, "batch_size": 0}, ["field 'batch_size' must be >= 1"]),
    ("missing_required", {"output": "OUT"}, ["missing required field(s) ['data']", "--data"]),
]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("case,mapping,phrases", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_file_exit_2_naming_the_field(tmp_path, capsys, suffix, case, mapping, phrases):
    out = tmp_path / "run"
    mapping = {k: str(out) if v == "OUT" else v for k, v in mapping.items()}
    cfg_file = write_config(tmp_path / f"cfg{suffix}", mapping)
    assert main(["train", "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err
    assert f"implicit-prm train: error: {cfg_file}: " in err and "Traceback" not in err
    for phrase in phrases:
        assert phrase in err
    assert not out.exists()


def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "command line: missing required field(s) ['data']" in err and "--data" in err
    for argv, phrase in [(["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
                         (["--objective", "ppo"], "argument --objective: invalid choice: 'ppo'"),
                         (["--batch-size", "0"], "field 'batch_size' must be >= 1"),
                         (["--warmup-steps", "1"], "unrecognized arguments: --warmup-steps")]:
        try:
            code = main(["train", "--data", "d", "--output", str(tmp_path / "run"), *argv])
        except SystemExit as e:  # argparse's own errors
            code = e.code
        assert code == 2, argv
        assert phrase in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name,text,phrase", [
    ("absent.yaml", None, "config file not found"),
    ("broken.yaml", "lr: [1, 2\n", "cannot parse config file"),
    ("broken.json", '{"lr": 1,}', "cannot parse config file"),
    ("list.yaml", "- lr\n- 1\n", "config file must hold a mapping"),
])
def test_unreadable_config_file(tmp_path, capsys, name, text, phrase):
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {phrase}" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- the saved config

def test_train_saves_its_full_resolved_config(tmp_path, capsys, tiny_model):
    data = tmp_path / "d.jsonl"
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=2, samples_per_problem=2, seed=1))
    out = tmp_path / "run"
    cfg_file = write_config(tmp_path / "train.yaml", {
        "data": str(data), "output": str(out), "model": tiny_model, "lr": 0.01, "batch_size": 2, "max_steps": 1,
        "precision": "fp32", "progress": False, "logprob_cache": str(tmp_path / "rc.sqlite"), "objective": "kto"})
    assert main(["train", "--config", str(cfg_file), "--lr", "0.002", "--beta", "0.2"]) == 0
    capsys.readouterr()
    want = TrainConfig(data=str(data), output=str(out), model=tiny_model, lr=0.002, beta=0.2, batch_size=2,
                       max_steps=1, precision="fp32", progress=False, logprob_cache=str(tmp_path / "rc.sqlite"),
                       objective="kto")
    saved = json.loads((out / "train_config.json").read_text())
    assert saved == {"command": "TrainConfig", **dataclasses.asdict(want)}
    # the saved file is itself a valid --config for the same run (less the "command" tag)
    saved.pop("command")
    again = write_config(tmp_path / "again.json", saved)
    assert from_args(TrainConfig, build_parser(["train", "--config", str(again)]).parse_args(["train", "--config", str(again)])) == want


def test_score_saves_its_full_resolved_config(tmp_path, capsys, builtin_data, tiny_model, tiny_model_b):
    out = tmp_path / "scored" / "out.jsonl"
    cfg_file = write_config(tmp_path / "score.json", {
        "input": str(builtin_data), "prm": tiny_model_b, "ref": tiny_model, "beta": 0.3, "precision": "fp32",
        "progress": False, "logprob_cache": str(tmp_path / "rc.sqlite"), "token_rewards": True})
    assert main(["score", "--config", str(cfg_file), "--output", str(out), "--no-token-rewards"]) == 0
    capsys.readouterr()
    want = ScoreConfig(input=str(builtin_data), output=str(out), prm=tiny_model_b, ref=tiny_model, beta=0.3,
                       precision="fp32", progress=False, logprob_cache=str(tmp_path / "rc.sqlite"), token_rewards=False)
    saved = json.loads(out.with_name("out.jsonl.config.json").read_text())
    assert saved == {"command": "ScoreConfig", **dataclasses.asdict(want)}
    assert "token_rewards" not in json.loads(out.read_text().splitlines()[0])


def test_data_saves_its_config(tmp_path, capsys):
    out = tmp_path / "d" / "rollouts.jsonl"
    assert main(["data", "--output", str(out), "--n-problems", "2", "--seed", "7"]) == 0
    saved = [json.loads(p.read_text()) for p in out.parent.iterdir() if p.name.endswith(".json")]
    assert [s for s in saved if s.get("command") == "BuiltinDataConfig"] == [
        {"command": "BuiltinDataConfig", **dataclasses.asdict(BuiltinDataConfig(output=str(out), n_problems=2,
                                                                                  seed=7))}]


def test_renamed_fields_keep_their_former_names(tmp_path, capsys):
    """precision was dtype, logprob_cache was ref_cache, batch_tokens was ref_batch_tokens: the former names still
    work as flags and as config-file keys, and giving both names of one setting is refused."""
    argv = ["train", "--data", "d", "--output", "o", "--dtype", "fp32", "--ref-cache", "c.sqlite",
            "--ref-batch-tokens", "512"]
    cfg = from_args(TrainConfig, build_parser(argv).parse_args(argv))
    assert (cfg.precision, cfg.logprob_cache, cfg.batch_tokens) == ("fp32", "c.sqlite", 512)
    f = write_config(tmp_path / "old.yaml", {"input": "i", "output": "o", "prm": "m", "dtype": "bf16",
                                             "ref_cache": "none"})
    argv = ["score", "--config", str(f)]
    cfg = from_args(ScoreConfig, build_parser(argv).parse_args(argv))
    assert (cfg.precision, cfg.logprob_cache) == ("bf16", "none")
    both = write_config(tmp_path / "both.yaml", {"input": "i", "output": "o", "prm": "m", "dtype": "bf16",
                                                 "precision": "fp32"})
    assert main(["score", "--config", str(both)]) == 2
    assert "fields 'dtype' and 'precision' are the same setting" in capsys.readouterr().err
    assert "(formerly--dtype)" in squash(subparser("train").format_help())


def test_a_flag_overrides_a_former_name_in_the_config_file(tmp_path):
    f = write_config(tmp_path / "old.yaml", {"data": "d", "output": "o", "dtype": "bf16", "ref_cache": "none"})
    argv = ["train", "--config", str(f), "--precision", "fp32"]
    cfg = from_args(TrainConfig, build_parser(argv).parse_args(argv))
    assert (cfg.precision, cfg.logprob_cache) == ("fp32", "none")


def test_kto_needs_two_responses_per_micro_batch(capsys):
    assert main(["train", "--data", "d", "--output", "o", "--objective", "kto", "--batch-size", "1"]) == 2
    assert "field 'batch_size' must be >= 2" in capsys.readouterr().err
