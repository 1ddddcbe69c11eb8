"""The report: real bon/steps/outcome outputs of a tiny hand-made scored file -> HTML and Markdown pages."""
from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from implicit_prm.errors import ConfigError, InputError, UserError
from implicit_prm.eval.bon import BonConfig, run_bon
from implicit_prm.eval.outcome import OutcomeConfig, run_outcome
from implicit_prm.eval.report import (
    ReportConfig,
    make_report,
    pick_solutions,
    read_solutions,
    reward_colour,
    solution_html,
)
from implicit_prm.eval.steps import StepsConfig, run_steps

# (problem, prompt, steps, correct, first_error, step rewards); 2 problems x 2 responses; q = running sum of rewards
SOLUTIONS = [
    ("P1", "What is 1+1?", ["Step 1: 1+1 = 2.", "The answer is 2."], True, -1, [0.5, 1.0]),
    ("P1", "What is 1+1?", ["Step 1: 1+1 = 3.", "The answer is 3."], False, 0, [-2.0, -0.5]),
    ("P2", "What is 2*3?", ["Step 1: 2*3 = 6. <script>alert(1)</script>", "The answer is 6."], True, -1, [1.0, 0.25]),
    ("P2", "What is 2*3?", ["Step 1: 2*3 = 6.", "Step 2: 6 - 1 = 5.", "The answer is 5."], False, 1, [0.5, -1.0, -0.5]),
]
# Colours: the largest |r| shown is 2.0, so r = -2 is full RED (230, 124, 115); r = +1 is halfway to GREEN
# (87, 187, 138): 255 + (87 - 255)/2 = 171, 255 + (187 - 255)/2 = 221, 255 + (138 - 255)/2 = 196.5 -> 197.
FULL_RED, HALF_GREEN = "rgb(230, 124, 115)", "rgb(171, 221, 197)"


def scored_records():
    recs = []
    for pid, prompt, steps, ok, fe, rewards in SOLUTIONS:
        response = "\n\n".join(steps)
        spans, start = [], 0
        for s in steps:
            spans.append([start, start + len(s)])
            start += len(s) + 2
        recs.append({"problem_id": pid, "prompt": prompt, "response": response, "correct": ok, "first_error": fe,
                     "step_spans": spans, "step_rewards": rewards, "q_values": np.cumsum(rewards).tolist(),
                     "scores": {"min": min(rewards), "last": rewards[-1]}})
    return recs


@pytest.fixture
def results(tmp_path):
    """Every eval output of one scored file, made by the real commands."""
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps(r) + "\n" for r in scored_records()))
    first = run_bon(BonConfig(input=str(scored), subsets="first"))  # scored.bon.json + scored.bon.png
    rand = run_bon(BonConfig(input=str(scored), output=str(tmp_path / "rand.json"),
                             plot=str(tmp_path / "plots" / "rand.png"), n_subsets=7))
    # threshold 0.7 on sigmoid(q): sigmoid(0.5) = 0.62 flags step 0 of the 1st (wrongly) and 4th (label 1) responses,
    # the 2nd (q -2) is flagged right at 0, the 3rd (q 1, 1.25) rightly not: acc_err 1/2, acc_ok 1/2, F1 1/2
    st = run_steps(StepsConfig(input=str(scored), threshold=0.7))
    oc = run_outcome(OutcomeConfig(input=str(scored)))  # min scores 0.5, 0.25 correct > -1, -2 wrong: AUROC 1
    return {"scored": scored, "first": first, "rand": rand, "steps": st, "outcome": oc,
            "bon": [str(tmp_path / "scored.bon.json"), str(tmp_path / "rand.json")],
            "steps_json": str(tmp_path / "scored.steps.json"), "outcome_json": str(tmp_path / "scored.outcome.json")}


def report(results, output, **kw):
    cfg = ReportConfig(output=str(output), bon=results["bon"], steps=[results["steps_json"]],
                       outcome=[results["outcome_json"]], scored=str(results["scored"]), n_solutions=4, **kw)
    return make_report(cfg)


def cells(text: str) -> list[list[str]]:
    """The cells of every table row, from HTML <tr> or Markdown | rows."""
    rows = [re.findall(r"<t[dh]>(.*?)</t[dh]>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", text)]
    rows += [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines() if line.startswith("| ")]
    return [[re.sub(r"</?code>|`", "", c) for c in r] for r in rows]


def check_tables(text: str, results) -> None:
    rows = cells(text)
    # best-of-N, subsets "first": prm.min picks 0.5 over -2 and 0.25 over -1 -> 100 at N=1, 2; random = 100, 50
    assert ["prm.min", "100.0", "100.0"] in rows and ["random", "100.0", "50.0"] in rows
    rand = results["rand"]["methods"]["random"]  # random subsets: mean ± std over the 7 draws
    assert ["random", *(f"{100 * a:.1f} ± {100 * s:.1f}" for a, s in zip(rand["acc"], rand["std"]))] in rows
    assert rand["std"][0] > 0
    assert ["evaluated on the input (threshold given)", "0.7", "50.0", "50.0", "50.0", "2", "2"] in rows
    opt = results["steps"]["optimistic"]
    assert [opt["label"], f"{opt['threshold']:.4g}", "100.0", "100.0", "100.0", "2", "2"] in rows
    m = results["outcome"]["methods"]["prm.min"]
    assert ["prm.min", "1.000", "100.0", "100.0", f"{m['optimistic']['threshold']:.4g}"] in rows


def check_solutions(text: str) -> None:
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # the wrong step of response 2 (r = -2) is full red; step 1 of response 1 (r = +1) is half green
    assert re.search(rf"background:{re.escape(FULL_RED)}\">.*?step 0 · r = -2\.000 · σ\(q\) = 0\.119 · "
                     r"✗ first wrong step\]</b></span> Step 1: 1\+1 = 3\.</div>", text)
    assert re.search(rf"background:{re.escape(HALF_GREEN)}\">.*?step 1 · r = \+1\.000 · σ\(q\) = 0\.818\]", text)
    # response 4: q = 0.5 - 1 = -0.5 at its true first wrong step 1, sigmoid(-0.5) = 0.378
    assert "step 1 · r = -1.000 · σ(q) = 0.378 · ✗ first wrong step]" in text
    assert text.count("✗ first wrong step]") == 2
    assert text.count("true first wrong step: none (all steps right)") == 2


def checked_report(results, output) -> tuple[Path, str]:
    """Make the report and check the numbers and solutions that both formats share."""
    out = report(results, output)
    text = out.read_text()
    check_tables(text, results)
    check_solutions(text)
    return out, text


def test_html_report(results, tmp_path):
    out, text = checked_report(results, tmp_path / "out" / "report.html")
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 2 and all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)
    assert "src=\"data:" in text and ".png\"" not in text  # self-contained: no file links
    assert json.loads((tmp_path / "out" / "report.html.config.json").read_text())["command"] == "ReportConfig"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html", "report.html.config.json"]


def test_markdown_report(results, tmp_path):
    out, text = checked_report(results, tmp_path / "md" / "report.md")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    targets = [(out.parent / urllib.parse.unquote(link)).resolve() for link in links]
    assert targets == [(tmp_path / "scored.bon.png").resolve(), (tmp_path / "plots" / "rand.png").resolve()]
    assert all(t.exists() for t in targets)
    blocks = text.split('<div style="border')[1:]
    assert len(blocks) == 4 and all("\n\n" not in b.strip() for b in blocks)  # a blank line ends an HTML block
    assert "🟥 step 0 · r = -2.000" in text and "🟩 step 1 · r = +1.000" in text  # emoji for GitHub


def test_missing_plot_is_drawn(results, tmp_path):
    (tmp_path / "scored.bon.png").unlink()
    md = report(results, tmp_path / "r.md")
    assert "](r.bon0.png)" in md.read_text() and (tmp_path / "r.bon0.png").read_bytes().startswith(b"\x89PNG")
    html_out = report(results, tmp_path / "h" / "r.html")
    assert html_out.read_text().count("data:image/png;base64,") == 2
    assert sorted(p.name for p in html_out.parent.iterdir()) == ["r.html", "r.html.config.json"]


def test_pick_solutions_is_deterministic(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in scored_records()))
    sols = read_solutions(path, "min")
    # 2 -> one incorrect (response 2: P1, a known first wrong step, first in file order), then one correct from a
    # prompt not yet shown (response 3, P2) rather than response 1 (P1)
    assert [s.line for s in pick_solutions(sols, 2)] == [2, 3]
    assert [s.line for s in pick_solutions(sols, 3)] == [1, 2, 4]  # 2 incorrect, then the correct response 1
    assert [s.line for s in pick_solutions(sols, 10)] == [1, 2, 3, 4]
    assert pick_solutions(sols, 0) == []


def test_presplit_solution_uses_label_and_the_scoring_separator(tmp_path):
    # ProcessBench: `label` is the first wrong step, the outcome is final_answer_correct; scored with separator "\n"
    steps = ["Let x = 2.", "Then x + x = 5.", "So 5."]  # spans into "\n".join(steps): [0,10] [11,26] [27,32]
    rec = {"problem": "Double 2.", "steps": steps, "label": 1, "final_answer_correct": False,
           "step_spans": [[0, 10], [11, 26], [27, 32]], "step_rewards": [0.1, -0.4, 0.0], "q_values": [0.1, -0.3, -0.3],
           "scores": {"ours": {"min": -0.4}}}
    path = tmp_path / "pb.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (path.parent / "pb.jsonl.config.json").write_text(json.dumps({"step_separator": "\n"}))
    (s,) = read_solutions(path, "min")
    assert (s.prompt, s.correct, s.first_error, s.scores) == ("Double 2.", 0, 1, {"ours.min": -0.4})
    html = solution_html(1, s, 0.4, emoji=False)
    assert "background:rgb(230, 124, 115)\"><span style=\"font-size:80%;color:#333\"><b>[step 1 · r = -0.400 · " \
           "σ(q) = 0.426 · ✗ first wrong step]</b></span> Then x + x = 5.</div>" in html
    assert "true first wrong step: step 1 · ours.min = -0.400" in html
    (path.parent / "pb.jsonl.config.json").unlink()  # default "\n\n": the spans no longer fit the text
    with pytest.raises(InputError) as e:
        read_solutions(path, "min")
    assert e.value.field == "step_spans[1]"


def test_presplit_spans_as_score_writes_them(tmp_path):
    """`score` gives each pre-split step its span with the separator after it ([0, 11] is "Let x = 2.\n")."""
    from implicit_prm.splitting import spans_from_steps

    steps = ["Let x = 2.", "Then x + x = 5.", "So 5."]
    assert spans_from_steps(steps, "\n") == [(0, 11), (11, 27), (27, 32)]
    rec = {"problem": "Double 2.", "steps": steps, "label": 1, "final_answer_correct": False,
           "step_spans": [[0, 11], [11, 27], [27, 32]], "step_rewards": [0.1, -0.4, 0.0],
           "q_values": [0.1, -0.3, -0.3], "scores": {"ours": {"min": -0.4}}}
    path = tmp_path / "pb.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    (path.parent / "pb.jsonl.config.json").write_text(json.dumps({"step_separator": "\n"}))
    (s,) = read_solutions(path, "min")
    assert s.first_error == 1 and "Then x + x = 5." in solution_html(1, s, 0.4, emoji=False)


def test_reward_colour():
    assert reward_colour(0.0, 2.0) == "rgb(255, 255, 255)"
    assert reward_colour(-2.0, 2.0) == reward_colour(-5.0, 2.0) == FULL_RED
    assert reward_colour(1.0, 2.0) == HALF_GREEN
    assert reward_colour(1.0, 0.0) == "rgb(255, 255, 255)"


def test_missing_input_writes_nothing(results, tmp_path):
    out = tmp_path / "bad" / "report.html"
    with pytest.raises(InputError, match="file not found"):
        make_report(ReportConfig(output=str(out), bon=[str(tmp_path / "nope.json")], steps=[results["steps_json"]]))
    with pytest.raises(InputError) as e:  # a steps result where a bon one belongs
        make_report(ReportConfig(output=str(out), bon=[results["steps_json"]]))
    assert e.value.field == "schema"
    recs = scored_records()
    recs[2]["step_spans"][1] = [30, 999]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(InputError) as e:
        make_report(ReportConfig(output=str(out), scored=str(bad)))
    assert (e.value.line, e.value.field) == (3, "step_spans[1]")
    assert not out.parent.exists()
    with pytest.raises(UserError):
        make_report(ReportConfig(output=str(out), scored=str(results["scored"]), score_key="median"))
    assert not out.parent.exists()


def test_config_checks():
    with pytest.raises(ConfigError, match=r"\.md or \.html"):
        ReportConfig(output="r.pdf", bon=["x.json"])
    with pytest.raises(ConfigError, match="nothing to report"):
        ReportConfig(output="r.md")
