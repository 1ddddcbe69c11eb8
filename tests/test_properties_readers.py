"""Property tests (hypothesis) of the input readers: any file gives a valid parse or a clean UserError naming the
file, never another exception (a traceback for the user).

Inputs: random bytes, random JSON documents, and JSON records built from the real field names with values of the
right type, the wrong type, or anything. The bugs these properties found have their own tests at the end, each with
its minimal failing example.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import typing

import numpy as np
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from implicit_prm.cli import main
from implicit_prm.core.config import from_mapping, load_config_file
from implicit_prm.core.errors import ConfigError, InputError, UserError
from implicit_prm.core.io import read_json_records, write_jsonl
from implicit_prm.data import read_samples
from implicit_prm.eval.bon import read_responses
from implicit_prm.eval.outcome import read_outcomes
from implicit_prm.eval.steps import read_step_data
from implicit_prm.training.config import TrainConfig

# ----------------------------------------------------------------------------- strategies

FIELDS = ["prompt", "response", "completions", "correctness", "steps", "label", "final_answer_correct", "problem",
          "correct", "scores", "q_values", "step_rewards", "first_error", "extracted_answer", "answer_pred",
          "problem_id", "n_steps_total", "answer", "completion_index", "question", "solution"]
TEXTS = ["", " ", "\n", "\n\n", "Step 1: 7 + 5 = 12", "The answer is 4.", "é中😀", "\\boxed{3}", "null", "1"]
BIG = 10**400  # an integer beyond float range

texts = st.one_of(st.text(max_size=12), st.sampled_from(TEXTS))
leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-2**64, 2**64), st.just(BIG), st.floats(),
                   texts)
json_values = st.recursive(leaves, lambda c: st.one_of(st.lists(c, max_size=4),
                                                       st.dictionaries(st.sampled_from(FIELDS) | texts, c, max_size=4)),
                           max_leaves=12)
labels = st.one_of(st.sampled_from([True, False, 0, 1, -1, 2, None, "1", 0.0, 1.5]), st.integers(-3, 6))
numbers = st.one_of(st.floats(), st.integers(-5, 5), st.sampled_from([2**64, True, "1", None]))
score_dicts = st.dictionaries(st.sampled_from(["min", "last", "sum", "mean"]) | texts,
                              numbers | st.dictionaries(st.sampled_from(["min", "last"]), numbers, max_size=2),
                              max_size=4)
# each field: a value of the right shape most of the time, else anything
FIELD_VALUES = {
    **{f: texts | json_values for f in ("prompt", "response", "problem", "question", "solution", "answer",
                                        "extracted_answer", "answer_pred")},
    "problem_id": st.integers(0, 3) | texts | json_values,
    **{f: st.lists(texts, max_size=4) | json_values for f in ("completions", "steps")},
    "correctness": st.lists(labels, max_size=4) | labels | json_values,
    **{f: labels | json_values for f in ("label", "final_answer_correct", "correct", "first_error", "n_steps_total",
                                         "completion_index")},
    "scores": score_dicts | json_values,
    **{f: st.lists(numbers, max_size=5) | json_values for f in ("q_values", "step_rewards")},
}
shaped_records = st.fixed_dictionaries({}, optional=FIELD_VALUES)
records = st.one_of(shaped_records, shaped_records, st.dictionaries(st.sampled_from(FIELDS) | texts, json_values,
                                                                    max_size=5), json_values)


@st.composite
def json_files(draw) -> bytes:
    """A JSONL file (blank lines, CRLF, a torn last line sometimes) or a JSON array, of random records."""
    recs = draw(st.lists(records, max_size=5))
    ascii_only = draw(st.booleans())
    if draw(st.booleans()):
        text = json.dumps(recs, ensure_ascii=ascii_only, indent=draw(st.sampled_from([None, 1])))
    else:
        lines = [json.dumps(r, ensure_ascii=ascii_only) for r in recs]
        if lines and draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\t"])))
        text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))
    if text and draw(st.integers(0, 9)) == 0:  # torn: cut anywhere
        text = text[:draw(st.integers(0, len(text) - 1))]
    return text.encode("utf-8")


words = st.one_of(st.text(min_size=1, max_size=12).filter(str.strip), st.sampled_from(TEXTS).filter(str.strip))
finite_floats = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5)


@st.composite
def good_records(draw, kind: str, n: int, methods: list[str]) -> dict:
    """A well-formed record of one input format (the eval kinds carry scores with the given methods)."""
    if kind == "rollout":
        return {"prompt": draw(words), "completions": draw(st.lists(words, min_size=n, max_size=n)),
                "correctness": draw(st.lists(st.booleans() | st.sampled_from([0, 1]), min_size=n, max_size=n)),
                "first_error": draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n))}
    if kind == "flat":
        return {"prompt": draw(words), "response": draw(words), "label": draw(st.sampled_from([0, 1, True, None]))}
    steps = draw(st.lists(words, min_size=n, max_size=n))
    rec = {"steps": steps, "label": draw(st.integers(-1, n - 1)), "final_answer_correct": draw(st.booleans())}
    rec["problem" if kind == "presplit" or draw(st.booleans()) else "prompt"] = draw(words)
    if kind == "presplit":
        return rec
    del rec["steps"]  # scored: a response with its step values, correctness and scores
    rec.update({"response": "\n\n".join(steps), "correct": draw(st.booleans()), "first_error": rec.pop("label"),
                "problem_id": draw(st.integers(0, 1)), "extracted_answer": draw(st.none() | words),
                "q_values": draw(st.lists(finite_floats, min_size=n, max_size=n)),
                "step_rewards": draw(st.lists(finite_floats, min_size=n, max_size=n))})
    if kind == "scored_presplit":
        rec["steps"], rec["label"] = steps, rec["first_error"]
    nested = draw(st.booleans())
    rec["scores"] = {("src" if nested else m): ({m: draw(finite_floats)} if nested else draw(finite_floats))
                     for m in methods}
    return rec


@st.composite
def good_files(draw) -> bytes:
    """Well-formed records of one kind, one field of one record sometimes deleted or replaced by anything."""
    kind = draw(st.sampled_from(["rollout", "flat", "presplit", "scored", "scored_presplit"]))
    methods = draw(st.lists(st.sampled_from(["min", "last", "sum", "mean"]), min_size=1, max_size=3, unique=True))
    recs = [draw(good_records(kind, draw(st.integers(1, 3)), methods)) for _ in range(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        rec = draw(st.sampled_from(recs))
        key = draw(st.sampled_from(sorted(rec)))
        if draw(st.booleans()):
            del rec[key]
        else:
            rec[key] = draw(FIELD_VALUES.get(key, json_values))
    if draw(st.booleans()):
        return json.dumps(recs, ensure_ascii=draw(st.booleans())).encode("utf-8")
    return "".join(json.dumps(r, ensure_ascii=draw(st.booleans())) + "\n" for r in recs).encode("utf-8")


any_files = st.one_of(good_files(), good_files(), json_files(), st.binary(max_size=200),
                      st.text(max_size=100).map(lambda s: s.encode("utf-8")))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readers")


def write(workdir, data: bytes, name: str = "input.jsonl"):
    path = workdir / name
    path.write_bytes(data)
    return path


def parse_or_user_error(fn, path):
    """fn(path), or None when it raised a UserError; a UserError must name the file."""
    try:
        got = fn(path)
    except UserError as e:
        assert isinstance(e, InputError), f"{type(e).__name__}: {e}"
        assert str(path) in str(e)
        event("InputError")
        return None
    event("parsed")
    return got


# ----------------------------------------------------------------------------- the JSON and data readers

@settings(max_examples=300)
@given(data=any_files)
@example(data=b"")
@example(data=b"\xff\xfe{}")
@example(data=b"[1]")
@example(data=b"\xef\xbb\xbf{}")  # a UTF-8 byte order mark
def test_read_json_records(workdir, data):
    path = write(workdir, data)
    got = parse_or_user_error(lambda p: list(read_json_records(p)), path)
    if got is not None:
        assert all(isinstance(line, int) and line >= 1 and isinstance(rec, dict) for line, rec in got)
        assert [line for line, _ in got] == sorted({line for line, _ in got})


@settings(max_examples=300)
@given(data=any_files, require_label=st.booleans(), separator=st.sampled_from(["\n\n", "\n", " "]))
@example(data=b'{"prompt": "p", "completions": ["a"], "correctness": [true]}', require_label=True, separator="\n\n")
@example(data=b'{"problem": "p", "steps": ["a", "b"], "label": 1}', require_label=False, separator="\n\n")
@example(data=b'{"prompt": "p", "response": "r"}', require_label=True, separator="\n\n")
def test_read_samples(workdir, data, require_label, separator):
    path = write(workdir, data)
    samples = parse_or_user_error(lambda p: read_samples(p, separator, require_label=require_label), path)
    if samples is None:
        return
    assert samples
    for s in samples:
        assert isinstance(s.prompt, str) and s.prompt.strip() and isinstance(s.response, str) and s.response.strip()
        assert s.label in ((0, 1) if require_label else (0, 1, None))
        if s.steps is not None:
            assert s.response == separator.join(s.steps) and all(x.strip() for x in s.steps)
        assert s.source[0] == str(path) and s.source[1] >= 1


# ----------------------------------------------------------------------------- the eval readers

@settings(max_examples=300)
@given(data=any_files, signal=st.sampled_from(["q_value", "step_reward"]))
@example(data=b'{"q_values": [0.5, -1], "first_error": 1}', signal="q_value")
@example(data=b'{"step_rewards": [1e308, 1e308], "steps": ["a", "b"], "label": -1}', signal="step_reward")
def test_read_step_data(workdir, data, signal):
    path = write(workdir, data)
    got = parse_or_user_error(lambda p: read_step_data(p, signal), path)
    if got is None:
        return
    assert len(got.signals) == len(got.labels) == len(got.lines) > 0
    for values, label in zip(got.signals, got.labels):
        assert len(values) > 0 and np.all(np.isfinite(values)) and -1 <= label < len(values)


@settings(max_examples=300)
@given(data=any_files, name=st.sampled_from(["prm", "x"]), ragged=st.sampled_from(["error", "truncate"]))
@example(data=b'{"prompt": "p", "correct": true, "scores": {"min": 1}}\n{"prompt": 7, "correct": 0, '
              b'"scores": {"min": -1e308}}', name="prm", ragged="error")
def test_read_responses(workdir, data, name, ragged):
    path = write(workdir, data)
    got = parse_or_user_error(lambda p: read_responses(p, name, ragged), path)
    if got is None:
        return
    p, k = got.correct.shape
    assert p > 0 and k > 0 and got.answers.shape == (p, k) and got.scores.shape == (p, k, len(got.methods))
    assert np.all(np.isfinite(got.scores)) and np.all(got.answers >= -1)


@settings(max_examples=300)
@given(data=any_files, name=st.sampled_from(["prm", "x"]))
@example(data=b'{"steps": ["a"], "label": 0, "final_answer_correct": false, "scores": {"s": {"min": 2}}}',
         name="prm")
def test_read_outcomes(workdir, data, name):
    path = write(workdir, data)
    got = parse_or_user_error(lambda p: read_outcomes(p, name), path)
    if got is None:
        return
    labels_, scores, methods = got
    assert len(labels_) == len(scores) > 0 and set(labels_.tolist()) <= {0, 1}
    assert scores.shape == (len(labels_), len(methods)) and np.all(np.isfinite(scores))


# ----------------------------------------------------------------------------- the CLI end to end

VERBS = {"eval outcome": [], "eval steps": ["--threshold", "0.5"], "eval bon": [],
         "score": ["--prm", "no-such-model"]}  # score reads its input before it loads a model


@settings(max_examples=40)
@given(data=st.binary(max_size=200), verb=st.sampled_from(sorted(VERBS)))
@example(data=b"\xff", verb="eval outcome")
@example(data=b"", verb="eval steps")
@example(data=b"\x00", verb="score")
def test_cli_random_bytes_exit_2(workdir, data, verb):
    path = write(workdir, data)
    out = workdir / "out.json"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*verb.split(), *VERBS[verb], "--input", str(path), "--output", str(out)])
    assert code == 2, err.getvalue()
    assert f"implicit-prm {verb}: error: {path}" in err.getvalue()
    assert not out.exists()


# ----------------------------------------------------------------------------- the config reader

def hint_values(tp) -> st.SearchStrategy:
    """Values of a config field's type (by its type hint), or of a neighbouring wrong type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return st.one_of(*(hint_values(a) for a in args))
    if tp is type(None):
        return st.none()
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (list, tuple):
        return st.lists(hint_values(args[0] if args else str), max_size=3)
    return {bool: st.booleans(), int: st.integers(-2, 2**20), float: st.floats() | st.integers(-3, 3)
            | st.sampled_from(["1e-5", "2.5", "x"]), str: texts}.get(tp, texts)


def config_mappings(cls) -> st.SearchStrategy:
    """Mappings of the dataclass's field names (plus unknown names) to right- or wrong-typed values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: hint_values(hints[f.name]) | json_values for f in dataclasses.fields(cls)}
    extra = st.dictionaries(st.sampled_from(["dtype", "lr_", "Data", ""]) | st.text(max_size=6), json_values,
                            max_size=2)
    return st.tuples(st.fixed_dictionaries({}, optional=fields), extra,
                     st.integers(0, 3)).map(lambda t: {**t[0], **(t[1] if t[2] == 0 else {})})


@settings(max_examples=300)
@given(mapping=config_mappings(TrainConfig))
@example(mapping={"data": "d", "output": "o"})
@example(mapping={"data": "d", "output": "o", "lr": "1e-5", "precision": "fp32"})
@example(mapping={"data": "d", "output": "o", "dtype": "fp32", "precision": "fp32"})
def test_train_config_from_mapping(mapping):
    try:
        cfg = from_mapping(TrainConfig, mapping)
    except ConfigError:
        return
    assert isinstance(cfg, TrainConfig)
    for f in dataclasses.fields(TrainConfig):  # every value has its field's type
        value = getattr(cfg, f.name)
        hint = typing.get_type_hints(TrainConfig)[f.name]
        if hint is float:
            assert isinstance(value, float)
        elif hint in (int, bool, str):
            assert type(value) is hint, (f.name, value)
    json.dumps(dataclasses.asdict(cfg))  # what save_config writes


config_texts = st.one_of(
    st.text(max_size=80),
    config_mappings(TrainConfig).map(json.dumps),
    st.lists(st.tuples(st.sampled_from([f.name for f in dataclasses.fields(TrainConfig)]) | st.text(max_size=5),
                       st.sampled_from(["1", "-1", "1e-5", "1.0e-5", "true", "yes", "null", "~", "[1, 2]", "{a: 1}",
                                        "'x'", "\"y\"", "2020-01-01", ".inf", ".nan", "", "&a 1", "*a", "!!binary 0"])),
             max_size=5).map(lambda kv: "".join(f"{k}: {v}\n" for k, v in kv)),
)


@settings(max_examples=300)
@given(text=config_texts, suffix=st.sampled_from([".yaml", ".json", ".yml"]))
@example(text="", suffix=".yaml")
@example(text="- 1\n- 2\n", suffix=".yaml")
@example(text="a: [1\n", suffix=".yaml")
@example(text="[" * 100_000, suffix=".json")
def test_config_text_file(workdir, text, suffix):
    """A UTF-8 config file: a mapping, or ConfigError naming the file; then TrainConfig, or ConfigError."""
    path = write(workdir, text.encode("utf-8"), "config" + suffix)
    try:
        data = load_config_file(path)
    except ConfigError as e:
        assert str(path) in str(e)
        return
    assert isinstance(data, dict)
    try:
        from_mapping(TrainConfig, data, source=str(path))
    except ConfigError:
        pass


# ----------------------------------------------------------------------------- bugs these properties found (fixed)

@settings(max_examples=25)
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".yaml", ".json"]))
@example(data=b"\xff", suffix=".yaml")
def test_config_random_bytes(workdir, data, suffix):
    path = write(workdir, data, "config" + suffix)
    try:
        assert isinstance(load_config_file(path), dict)
    except ConfigError as e:
        assert str(path) in str(e)


def test_cli_config_random_bytes_exit_2(workdir, capsys):
    path = write(workdir, b"\xff", "config.yaml")
    assert main(["train", "--config", str(path)]) == 2
    assert "error" in capsys.readouterr().err


@settings(max_examples=25)
@given(mapping=st.dictionaries(st.integers() | st.none() | st.booleans() | st.floats(allow_nan=False), texts,
                               min_size=1, max_size=3).map(lambda d: {**d, "zz": 1}))
@example(mapping={1: 2, "zz": 3})
def test_config_non_string_keys(mapping):
    with pytest.raises(ConfigError):
        from_mapping(TrainConfig, mapping)


@settings(max_examples=10)
@given(field_name=st.sampled_from([f.name for f in dataclasses.fields(TrainConfig)
                                   if typing.get_type_hints(TrainConfig)[f.name] is float]),
       value=st.sampled_from([BIG, -BIG, 2**1024]))
@example(field_name="lr", value=BIG)
def test_config_float_field_huge_int(field_name, value):
    with pytest.raises(ConfigError):
        from_mapping(TrainConfig, {"data": "d", "output": "o", field_name: value})


@pytest.mark.parametrize("reader,data", [
    (read_step_data, b'{"q_values": [1' + b"0" * 400 + b'], "first_error": -1}'),
    (read_responses, b'{"prompt": "p", "correct": true, "scores": {"min": 1' + b"0" * 400 + b'}}'),
    (read_outcomes, b'{"correct": true, "scores": {"min": -1' + b"0" * 400 + b'}}'),
], ids=["read_step_data", "read_responses", "read_outcomes"])
def test_eval_readers_huge_integer(workdir, reader, data):
    path = write(workdir, data)
    with pytest.raises(InputError, match="finite number"):
        reader(path)


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"prompt": ' + b"[" * 100_000])
def test_deeply_nested_json(workdir, data):
    path = write(workdir, data)
    with pytest.raises(InputError):
        list(read_json_records(path))


@settings(max_examples=50)
@given(recs=st.lists(st.dictionaries(st.sampled_from(FIELDS), texts | json_values, max_size=4), min_size=1,
                     max_size=4))
@example(recs=[{"response": "a\u2028b"}])
def test_write_jsonl_round_trip(workdir, recs):
    path = workdir / "round_trip.jsonl"
    write_jsonl(path, recs)
    got = [rec for _, rec in read_json_records(path)]
    assert json.dumps(got, sort_keys=True) == json.dumps(recs, sort_keys=True)  # NaN-proof comparison


@pytest.mark.parametrize("data", [b'{"prompt": "p", "response": "a\\ud800", "label": 1}',
                                  b'{"problem": "\\udc00", "steps": ["a"], "final_answer_correct": true}'])
def test_lone_surrogate_escape(workdir, data):
    path = write(workdir, data)
    try:
        samples = read_samples(path)
    except InputError:
        return
    for s in samples:
        (s.prompt + s.response).encode("utf-8")  # what the tokenizer and the output writer need


def test_user_error_types():
    """The classes the properties above accept are the user-facing ones (exit code 2)."""
    assert issubclass(InputError, UserError) and issubclass(ConfigError, UserError)
    assert InputError("f", 1, "x", "m").exit_code == ConfigError("m").exit_code == 2
