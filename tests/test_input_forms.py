"""Every input form (JSONL, .jsonl.gz, parquet, a save_to_disk folder, a Dataset or list in the API, hf: names) and
every published format by its owner's field names (TRL stepwise / preference / unpaired, OpenRLHF PRM, the paper's
rollout schema), with `auto` refusing a record that fits two formats."""
from __future__ import annotations

import gzip
import json

import datasets
import pytest

from implicit_prm.core.errors import InputError, UserError
from implicit_prm.data import read_samples
from implicit_prm.data.formats import detect
from implicit_prm.data.pairs import build_pairs
from implicit_prm.data.sources import input_records

STEPWISE = [{"prompt": "What is 2 + 3 * 4?", "completions": ["3 * 4 = 12.", "2 + 12 = 14."], "labels": [True, True]},
            {"prompt": "What is 2 + 3 * 4?", "completions": ["2 + 3 = 5.", "5 * 4 = 20."], "labels": [False, False]}]
PREFERENCE = [{"prompt": "What is 1 + 1?", "chosen": "1 + 1 = 2.", "rejected": "1 + 1 = 3."},
              {"prompt": "What is 1 + 1?", "chosen": "It is 2.", "rejected": "It is 11."}]
UNPAIRED = [{"prompt": "What is 1 + 1?", "completion": "2", "label": True},
            {"prompt": "What is 1 + 1?", "completion": "3", "label": False}]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _forms(tmp_path, rows):
    """The same rows as JSONL, .jsonl.gz, parquet and a save_to_disk folder."""
    jsonl = _jsonl(tmp_path / "d.jsonl", rows)
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    return [str(jsonl), str(gz), str(tmp_path / "d.parquet"), str(tmp_path / "disk")]


def _view(samples):
    return [(s.prompt, s.response, s.label, s.steps, s.step_labels) for s in samples]


def test_trl_stepwise_in_every_form_reads_steps_and_step_labels(tmp_path):
    want = [("What is 2 + 3 * 4?", "3 * 4 = 12.\n\n2 + 12 = 14.", 1, ["3 * 4 = 12.", "2 + 12 = 14."], [1.0, 1.0]),
            ("What is 2 + 3 * 4?", "2 + 3 = 5.\n\n5 * 4 = 20.", 0, ["2 + 3 = 5.", "5 * 4 = 20."], [0.0, 0.0])]
    for form in _forms(tmp_path, STEPWISE):
        assert _view(read_samples(form)) == want, form  # the outcome label is the last step's label
    assert _view(read_samples(STEPWISE)) == want  # the Python API: a list of dicts
    assert _view(read_samples(datasets.Dataset.from_list(STEPWISE))) == want


def test_trl_preference_pairs_only_within_a_record(tmp_path):
    for form in _forms(tmp_path, PREFERENCE):
        samples = read_samples(form, require_label=True)
        assert [(s.response, s.label) for s in samples] == [("1 + 1 = 2.", 1), ("1 + 1 = 3.", 0),
                                                            ("It is 2.", 1), ("It is 11.", 0)]
        pairs, stats = build_pairs(samples, None, 0)
        # two records of one prompt: 2 pairs, not the 4 of every chosen x every rejected
        assert [(c.response, r.response) for c, r in pairs] == [("1 + 1 = 2.", "1 + 1 = 3."), ("It is 2.", "It is 11.")]
        assert stats.n_pairs == 2


def test_trl_preference_implicit_prompt_conversations():
    rec = {"chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
           "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}]}
    assert _view(read_samples([rec])) == [("Hi?", "Hello.", 1, None, None), ("Hi?", "Go away.", 0, None, None)]
    bad = {**rec, "rejected": [{"role": "user", "content": "Bye?"}, {"role": "assistant", "content": "No."}]}
    with pytest.raises(InputError, match="row 1: field 'rejected': .*same prompt turns"):
        read_samples([bad])


def test_trl_unpaired_and_conversational_prompt(tmp_path):
    for form in _forms(tmp_path, UNPAIRED):
        assert _view(read_samples(form)) == [("What is 1 + 1?", "2", 1, None, None), ("What is 1 + 1?", "3", 0, None, None)]
    conv = [{"prompt": [{"role": "user", "content": "Q?"}], "completion": [{"role": "assistant", "content": "A."}],
             "label": False}]
    assert _view(read_samples(conv)) == [("Q?", "A.", 0, None, None)]
    multi = [{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}], "completion": "A.",
              "label": True}]
    with pytest.raises(InputError, match="one user turn.*--system-prompt"):
        read_samples(multi)


def test_openrlhf_prm_with_its_own_label_key(tmp_path):
    rows = [{"input": "Janet has 3 apples. Step 1: 3 + 2 = 5 ки\nStep 2: 5 * 2 = 11 ки", "value": ["+", "-"]}]
    path = _jsonl(tmp_path / "o.jsonl", rows)
    got = read_samples(str(path), input_format="openrlhf-prm", columns={"label": "value"})
    assert _view(got) == [("Janet has 3 apples.", "Step 1: 3 + 2 = 5\n\nStep 2: 5 * 2 = 11", 0,
                           ["Step 1: 3 + 2 = 5", "Step 2: 5 * 2 = 11"], [1.0, 0.0])]
    # auto detects it once the label key is mapped; a custom tag comes from step_tag
    assert _view(read_samples(str(path), columns={"label": "value"})) == _view(got)
    tagged = [{"input": "Q?\nfirst <t> second <t>", "label": [1, 0.5]}]
    assert _view(read_samples(tagged, step_tag="<t>")) == [("Q?", "first\n\nsecond", 0, ["first", "second"],
                                                            [1.0, 0.5])]


def test_paper_rollout_schema_uses_steps_and_keeps_reference():
    rec = {"dataset": "gsm8k", "prompt": "What is 2 + 2?", "completions": ["2 + 2 = 4. The answer is 4", "5"],
           "correctness": [True, False], "steps": [["2 + 2 = 4.", "The answer is 4"], ["5"]], "reference": "4"}
    got = read_samples([rec], require_label=True)
    assert _view(got) == [("What is 2 + 2?", "2 + 2 = 4.\n\nThe answer is 4", 1, ["2 + 2 = 4.", "The answer is 4"], None),
                          ("What is 2 + 2?", "5", 0, ["5"], None)]
    assert got[0].record["reference"] == "4" and got[1].record["steps"] == ["5"]


def test_auto_refuses_a_record_that_fits_two_formats():
    both = {"prompt": "Q", "completions": ["a", "b"], "labels": [True, False], "correctness": [True, False]}
    assert detect(both) == ["rollouts", "trl-stepwise"]
    with pytest.raises(InputError, match="fits more than one input format \\(rollouts and trl-stepwise"):
        read_samples([both])
    # naming the format reads it
    assert read_samples([both], input_format="trl-stepwise")[0].step_labels == [1.0, 0.0]
    flat_and_unpaired = {"prompt": "Q", "response": "a", "completion": "a", "label": 1}
    with pytest.raises(InputError, match="flat and trl-unpaired"):
        read_samples([flat_and_unpaired])


def test_flat_correct_from_grade_is_a_training_label_and_label_wins():
    assert [s.label for s in read_samples([{"prompt": "Q", "response": "a", "correct": True}], require_label=True)] == [1]
    both = {"prompt": "Q", "response": "a", "correct": True, "label": 0}
    assert read_samples([both])[0].label == 0


def test_errors_name_the_file_the_row_and_the_field(tmp_path):
    bad = STEPWISE + [{"prompt": "Q", "completions": ["a", "b"], "labels": [True]}]
    ds = datasets.Dataset.from_list([{**r, "labels": r["labels"]} for r in bad])
    ds.to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(InputError) as e:
        read_samples(str(tmp_path / "bad.parquet"))
    assert str(e.value).startswith(f"{tmp_path / 'bad.parquet'}:row 3: field 'labels': expected one true/false per step")
    folder = tmp_path / "not_a_dataset"
    folder.mkdir()
    with pytest.raises(InputError, match="a folder, but not one `datasets` saved"):
        read_samples(str(folder))


def test_save_to_disk_splits_and_hub_names(tmp_path, monkeypatch):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(UNPAIRED[:1]),
                               "test": datasets.Dataset.from_list(UNPAIRED[1:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert [s.label for s in read_samples(str(tmp_path / "dd"))] == [1]  # train by default
    assert [s.label for s in read_samples(str(tmp_path / "dd") + "@test")] == [0]
    with pytest.raises(InputError, match="holds the splits train, test"):
        list(input_records(str(tmp_path / "dd") + "@dev"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="hf:trl-lib/math_shepherd \\(default config, split test\\)"):
        read_samples("hf:trl-lib/math_shepherd@test")
    with pytest.raises(UserError, match="hf:OWNER/NAME"):
        read_samples("hf:math_shepherd")


def test_responses_from_any_engine_grade_then_train(tmp_path, tiny_model):
    """Rollouts written by another engine (vLLM, an API: prompt, completions, answer) -> `grade` -> `train`."""
    from implicit_prm.collect.grade import GradeConfig, grade_file
    from implicit_prm.training.config import TrainConfig
    from implicit_prm.training.loop import train

    rows = [{"prompt": "What is 2 + 3?", "completions": ["2 + 3 = 5. The answer is 5.", "The answer is 6."],
             "answer": "5"},
            {"prompt": "What is 4 * 2?", "completions": ["4 * 2 = 8, so \\boxed{8}", "\\boxed{6}"], "answer": "8"}]
    src = _jsonl(tmp_path / "engine.jsonl", rows)
    summary = grade_file(GradeConfig(input=str(src), output=str(tmp_path / "graded.jsonl")))
    assert (summary["n"], summary["n_correct"]) == (4, 2)
    graded = [json.loads(x) for x in (tmp_path / "graded.jsonl").read_text().splitlines()]
    assert [r["correctness"] for r in graded] == [[True, False], [True, False]]
    assert [r["extracted_answers"] for r in graded] == [["5", "6"], ["8", "6"]]
    out = train(TrainConfig(data=str(tmp_path / "graded.jsonl"), output=str(tmp_path / "run"), model=tiny_model,
                            objective="dpo", batch_size=2, max_steps=1, precision="fp32", progress=False,
                            logprob_cache=str(tmp_path / "c.sqlite"), checkpoint_every=0))
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and abs(log[0]["loss"] - 0.6931) < 1e-3  # DPO at init: ln 2, on the 2 graded pairs
    # a flat file graded by `grade` (field `correct`) trains too; TRL unpaired records get `label`
    flat = _jsonl(tmp_path / "flat.jsonl", [{"prompt": "Q?", "response": "\\boxed{3}", "answer": "3"},
                                            {"prompt": "Q?", "completion": "\\boxed{4}", "reference": "3"}])
    with pytest.raises(InputError, match="flat.jsonl:2: field 'response': missing"):
        grade_file(GradeConfig(input=str(flat), output=str(tmp_path / "g2.jsonl"), input_format="flat"))
    grade_file(GradeConfig(input=str(flat), output=str(tmp_path / "g2.jsonl")))
    g2 = [json.loads(x) for x in (tmp_path / "g2.jsonl").read_text().splitlines()]
    assert (g2[0]["correct"], g2[1]["label"]) == (True, False)
    assert [s.label for s in read_samples(str(tmp_path / "g2.jsonl"), require_label=True)] == [1, 0]


def test_eval_steps_reads_trl_stepwise_labels_as_the_first_wrong_step():
    from implicit_prm.eval.steps import read_step_data

    recs = [{"prompt": "Q", "completions": ["a", "b", "c"], "labels": [True, False, False],
             "q_values": [0.1, -0.2, -0.5], "step_rewards": [0.1, -0.3, -0.3]},
            {"prompt": "Q", "completions": ["a", "b"], "labels": [True, True], "q_values": [0.2, 0.4],
             "step_rewards": [0.2, 0.2]}]
    data = read_step_data(recs)
    assert data.labels.tolist() == [1, -1]  # the first False; -1 when every step is right
    with pytest.raises(InputError, match="row 1: field 'labels': expected one true/false per scored step \\(3\\)"):
        read_step_data([{**recs[0], "labels": [True, False]}])
