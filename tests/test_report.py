"""The report: real bon/steps/outcome outputs of a tiny hand-made scored file -> HTML and Markdown pages."""
from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from implicit_prm.core.errors import ConfigError, InputError, UserError
from implicit_prm.eval.bon import BonConfig, run_bon
from implicit_prm.eval.outcome import OutcomeConfig, run_outcome
from implicit_prm.eval.report import ReportConfig, make_report
from implicit_prm.eval.solutions import pick_solutions, read_solutions, reward_colour, solution_html
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
    """The cells of every table row, from HTML <tr> or Markdown | rows (Markdown escapes undone)."""
    rows = [re.findall(r"<t[dh]>(.*?)</t[dh]>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", text)]
    rows += [[re.sub(r"\\(.)", r"\1", c.strip()) for c in line.strip("|").split(" | ")]
             for line in text.splitlines() if line.startswith("| ")]
    return [[re.sub(r"</?code>|`", "", c) for c in r] for r in rows]


def ci(text: str, interval, scale: float = 100.0, digits: int = 1) -> str:
    """A cell with its interval, as the report writes it: "61.5 [52.1, 70.3]"."""
    lo, hi = interval
    return f"{text} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def check_tables(text: str, results, with_ci: bool = True) -> None:
    rows = cells(text)
    c = ci if with_ci else lambda t, *_: t  # noqa: E731
    # best-of-N, subsets "first": prm.min picks 0.5 over -2 and 0.25 over -1 -> 100 at N=1, 2 on both problems, so
    # every resample gives 100; random = 100, 50 (1/2 on both problems)
    assert ["prm.min", c("100.0", [1, 1]), c("100.0", [1, 1])] in rows
    assert ["random", c("100.0", [1, 1]), c("50.0", [0.5, 0.5])] in rows
    rand = results["rand"]["methods"]["random"]  # random subsets: mean ± std over the 7 draws
    assert ["random", *(c(f"{100 * a:.1f} ± {100 * s:.1f}", i) for a, s, i in
                        zip(rand["acc"], rand["std"], rand["ci"] if with_ci else rand["acc"]))] in rows
    assert rand["std"][0] > 0
    ev = results["steps"]["evaluated"]
    assert ["evaluated on the input (threshold given)", "0.7",
            *(c("50.0", ev["ci"][k] if with_ci else None) for k in ("acc_err", "acc_ok", "f1")), "2", "2"] in rows
    opt = results["steps"]["optimistic"]  # no interval: its threshold was tuned on the same data
    assert [opt["label"], f"{opt['threshold']:.4g}", "100.0", "100.0", "100.0", "2", "2"] in rows
    m = results["outcome"]["methods"]["prm.min"]
    assert ["prm.min", c("1.000", [1, 1], 1.0, 3), c("100.0", [1, 1]), "100.0",
            f"{m['optimistic']['threshold']:.4g}"] in rows
    notes = ["95% percentile bootstrap interval over the 2 problems (1000 resamples).",
             "95% percentile bootstrap interval over the 4 evaluated solutions, threshold fixed (1000 resamples)."]
    plain = text.replace("\\", "")
    assert all((n in plain) == with_ci for n in notes) and ("[lo, hi]:" in plain) == with_ci


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
    # a blank line would end the HTML block; each solution ends with "\n</div>"
    assert len(blocks) == 4 and all("\n\n" not in b.split("\n</div>")[0] for b in blocks)
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
    from implicit_prm.steps.splitting import spans_from_steps

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
    with pytest.raises(ConfigError, match="'n_errors' must be >= 0"):
        ReportConfig(output="r.md", scored="s.jsonl", n_errors=-1)


def strip_ci(path: str) -> None:
    """Rewrite a result JSON as an older eval wrote it: no intervals and no bootstrap fields."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("ci", "ci_dropped", "n_bootstrap", "ci_level",
                                                                   "ci_unit", "n_units")}
        return [strip(v) for v in x] if isinstance(x, list) else x

    Path(path).write_text(json.dumps(strip(json.loads(Path(path).read_text()))))


@pytest.mark.parametrize("suffix", ["html", "md"])
def test_results_without_intervals_render(results, tmp_path, suffix):
    for p in [*results["bon"], results["steps_json"], results["outcome_json"]]:
        strip_ci(p)
    (tmp_path / "plots" / "rand.png").unlink()  # drawn again from the result without ci: the ±std band
    text = report(results, tmp_path / f"old.{suffix}").read_text()
    check_tables(text, results, with_ci=False)
    check_solutions(text)


@pytest.mark.parametrize("suffix", ["html", "md"])
def test_bon_section_says_why_raw_votes_are_left_out(results, tmp_path, suffix):
    """The fixture's scores are log-ratios (no reward_schema): no weighted_majority_raw rows, one note per bon table
    naming the methods; a result from before the note (no such field) renders without it."""
    text = report(results, tmp_path / f"raw.{suffix}").read_text().replace("\\", "")
    assert not any(r and r[0].startswith("weighted_majority_raw") for r in cells(text))
    assert text.count("weighted_majority_raw is left out for prm.min (log_ratio), prm.last (log_ratio): ") == 2
    for p in results["bon"]:
        r = json.loads(Path(p).read_text())
        del r["weighted_majority_raw_left_out"]
        Path(p).write_text(json.dumps(r))
    assert "left out" not in report(results, tmp_path / f"old.{suffix}").read_text()


def test_bon_plot_band_from_ci_or_std(results, tmp_path, monkeypatch):
    """plot_bon shades the bootstrap interval when the result has one, else ±1 std over the random subsets."""
    from matplotlib.axes import Axes

    from implicit_prm.eval.bon import plot_bon

    bands = []
    monkeypatch.setattr(Axes, "fill_between", lambda self, x, lo, hi, **kw: bands.append((list(lo), list(hi))))
    rand = results["rand"]
    plot_bon(rand, tmp_path / "ci.png", ["random"])
    (lo, hi), = bands
    assert np.allclose(lo, [100 * c[0] for c in rand["methods"]["random"]["ci"]])
    assert np.allclose(hi, [100 * c[1] for c in rand["methods"]["random"]["ci"]])
    bands.clear()
    old = {**rand, "methods": {"random": {k: v for k, v in rand["methods"]["random"].items() if k != "ci"}}}
    plot_bon(old, tmp_path / "std.png", ["random"])
    (lo, hi), = bands
    acc, std = np.array(rand["methods"]["random"]["acc"]), np.array(rand["methods"]["random"]["std"])
    assert np.allclose(lo, 100 * (acc - std)) and np.allclose(hi, 100 * (acc + std))
    assert (tmp_path / "ci.png").read_bytes().startswith(b"\x89PNG")


# ---- error analysis: the problems whose top-1 pick is wrong -------------------------------------------------------

# (problem, score, correct, error_kind) in file order, lines 1-9; every step reward = the score
#   Q1: the wrong A (0.9) beats the correct B (0.5), C (0.2)   -> pick line 1, best correct line 2
#   Q2: the wrong E (0.8) beats the correct D (0.6)            -> pick line 5, best correct line 4
#   Q3: all wrong, H (0.7, no error_kind) on top               -> pick line 8 ("unknown"), no correct response
RESPONSES = [("Q1", 0.9, False, "arithmetic"), ("Q1", 0.5, True, None), ("Q1", 0.2, True, None),
             ("Q2", 0.6, True, None), ("Q2", 0.8, False, "arithmetic"), ("Q2", 0.1, False, "sign"),
             ("Q3", 0.3, False, "arithmetic"), ("Q3", 0.7, False, None), ("Q3", -0.1, False, "sign")]


def error_records(responses=RESPONSES):
    recs = []
    for i, (pid, score, ok, kind) in enumerate(responses):
        steps = [f"Step 1 of response {i + 1}.", f"So the answer is {i}."]
        rec = {"problem_id": pid, "prompt": f"Problem {pid}?", "response": "\n\n".join(steps), "correct": ok,
               "first_error": -1 if ok else 0, "step_spans": [[0, len(steps[0])], [len(steps[0]) + 2,
                                                                                   len(steps[0]) + 2 + len(steps[1])]],
               "step_rewards": [score, score], "q_values": [score, 2 * score], "scores": {"min": score}}
        if kind is not None:
            rec["error_kind"] = kind
        recs.append(rec)
    return recs


def write_scored(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_error_analysis_picks_and_kinds(tmp_path):
    from implicit_prm.eval.error_analysis import analyse, summary

    a = analyse(read_solutions(write_scored(tmp_path / "e.jsonl", error_records()), "min"))
    assert a.method == "prm.min" and (a.n_judged, a.n_skipped) == (3, 0)
    assert [(m.problem, m.pick.line, m.best_correct and m.best_correct.line) for m in a.mistakes] == [
        ("Q1", 1, 2), ("Q2", 5, 4), ("Q3", 8, None)]
    assert a.kinds == {"arithmetic": 2, "unknown": 1}  # the wrong picks
    assert a.all_kinds == {"arithmetic": 3, "sign": 2, "unknown": 1}  # every incorrect response
    # wrong picks 0.9, 0.8, 0.7; correct responses 0.5, 0.2, 0.6 (numpy's linear quartiles)
    assert summary(a.wrong_scores) == ["3", "0.800", "0.750", "0.850"]
    assert summary(a.correct_scores) == ["3", "0.500", "0.350", "0.550"]
    assert summary([]) == ["0", "—", "—", "—"]
    recs = error_records()
    recs[5].pop("correct"), recs[5].pop("first_error")  # Q2 has a response of unknown correctness: left out
    a = analyse(read_solutions(write_scored(tmp_path / "u.jsonl", recs), "min"))
    assert (a.n_judged, a.n_skipped, [m.problem for m in a.mistakes]) == (2, 1, ["Q1", "Q3"])


@pytest.mark.parametrize("suffix", ["html", "md"])
def test_error_analysis_section(tmp_path, suffix):
    scored = write_scored(tmp_path / "e.jsonl", error_records())
    out = make_report(ReportConfig(output=str(tmp_path / f"r.{suffix}"), scored=str(scored), n_solutions=0,
                                   n_errors=2))
    text = out.read_text()
    rows = cells(text)
    assert ["arithmetic", "2", "66.7", "3"] in rows and ["unknown", "1", "33.3", "1"] in rows
    assert ["sign", "0", "0.0", "2"] in rows
    assert ["wrong top-1 picks", "3", "0.800", "0.750", "0.850"] in rows
    assert ["correct responses", "3", "0.500", "0.350", "0.550"] in rows
    assert "3 of 3 problems pick a wrong one" in text
    # n_errors = 2: Q1 and Q2 (both with a correct response), each pick beside its best correct response
    heads = re.findall(r"<b>((?:Top-1 pick|Best-scored correct response) \(line \d\))", text)
    assert heads == ["Top-1 pick (line 1)", "Best-scored correct response (line 2)", "Top-1 pick (line 5)",
                     "Best-scored correct response (line 4)"]
    assert "error kind: arithmetic" in text and "display:flex" in text
    if suffix == "html":
        (uri,) = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
        assert base64.b64decode(uri).startswith(b"\x89PNG")
    else:
        assert "](r.errors.png)" in text and (tmp_path / "r.errors.png").read_bytes().startswith(b"\x89PNG")
        for block in text.split('<div style="display:flex')[1:]:  # a blank line would end the HTML block
            assert "\n\n" not in block.split("\n</div>\n</div>")[0]
    text = make_report(ReportConfig(output=str(tmp_path / f"all.{suffix}"), scored=str(scored), n_solutions=0,
                                    n_errors=5)).read_text()
    assert "Top-1 pick (line 8)" in text and "No correct response to this problem." in text


def test_error_analysis_all_picks_right(results, tmp_path):
    text = report(results, tmp_path / "r.html").read_text()  # min picks a correct response on both problems
    assert "0 of 2 problems pick a wrong one" in text and "Every top-1 pick is correct" in text
    assert "Top-1 pick (line" not in text and "wrong top-1 picks" not in text
    assert text.count("data:image/png;base64,") == 2  # the two bon plots, no histogram
