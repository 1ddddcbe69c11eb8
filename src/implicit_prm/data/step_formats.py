"""Readers of published step-labelled formats (Math-Shepherd, PRM800K) into pre-split rows with step labels.

Each reader returns one row (prompt, response, outcome label, steps, record, step_labels) as formats.read_samples
expects; step labels are 1 = the step is right, 0 = wrong.

Math-Shepherd (Wang et al. 2024, arXiv 2312.08935; peiyi9979/Math-Shepherd on the HF hub):
  {"input": question + " Step 1: ... ки\\nStep 2: ... ки", "label": the same text with each "ки" replaced by "+"
  or "-", "task": "GSM8K" | "MATH"}. The question is the text before the last "Step 1:" ahead of the first tag;
  the steps keep their "Step k:" prefix (as the data's solutions were written) and lose the tag and surrounding
  whitespace. "+" -> 1, "-" -> 0. Its labels are Monte-Carlo estimates (a step is "+" when some completion from it
  reached the right answer), and the last step's label is the final answer's correctness, which is taken as the
  outcome label.

PRM800K (Lightman et al. 2023, "Let's Verify Step by Step"; github.com/openai/prm800k, phase1/phase2 JSONL):
  {"question": {"problem", ...}, "label": {"steps": [{"completions": [{"text", "rating"}], "chosen_completion",
  "human_completion"}], "finish_reason"}}. One sample per record, following the trajectory as the PRM800K README
  reconstructs it: the chosen completion at each step, else the labeler-written human_completion (phase 1 lets
  labelers write their own step when every completion is rated -1; it is a +1 step). At the last step, when
  neither is given, the first completion rated -1 (phase 2 stops labelling at the first -1: finish_reason
  "found_error"); with none rated -1 (give_up with no completions) the trajectory ends before that step.
  Ratings: 1 -> 1, -1 -> 0, 0 ("not incorrect, but makes no progress", per the README) -> `neutral`, default 1:
  neutral counts as positive, the convention of OpenR's PRM800K preprocessing (openreasoner/openr docs/datasets.md:
  "we treat steps labelled neutral or good in PRM800K as positive").
  Outcome from finish_reason: "solution" (the README: "reached a step that concluded in the correct answer") -> 1;
  "found_error", "give_up" and "bad_problem" (no correct final answer was reached) -> 0.
"""
from __future__ import annotations

from ..core.errors import InputError
from ..core.validation import _encodable, describe_json

TAG = "ки"  # Math-Shepherd's step tag (Cyrillic "ki")
FIRST_STEP = "Step 1:"
PRM800K_OUTCOME = {"solution": 1, "found_error": 0, "give_up": 0, "bad_problem": 0}
PRM800K_RATINGS = (-1, 0, 1)


def _string(path, line, field: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, line, field, f"expected non-empty text, found {describe_json(value)}")
    _encodable(path, line, field, value)
    return value


def is_math_shepherd(rec: dict) -> bool:
    return isinstance(rec.get("input"), str) and TAG in rec["input"] and isinstance(rec.get("label"), str)


def math_shepherd_row(path, line, rec: dict, sep: str) -> tuple:
    """A Math-Shepherd record -> (question, sep.join(steps), last step's label, steps, rec, step labels)."""
    text = _string(path, line, "input", rec["input"])
    tagged = _string(path, line, "label", rec["label"])
    segments = text.split(TAG)  # n tags -> n + 1 segments; the last is what follows the last tag
    n = len(segments) - 1
    if segments[-1].strip():
        raise InputError(path, line, "input", f"text after the last step tag {TAG!r}: every step must end with it")
    marks, pos = [], 0
    for i, seg in enumerate(segments[:-1]):
        end = pos + len(seg)
        if not tagged.startswith(seg, pos) or end >= len(tagged) or tagged[end] not in "+-":
            raise InputError(path, line, "label", f"does not match 'input' at step {i + 1}: 'input' has {n} step tags "
                                                  f"{TAG!r}; expected the same text with each replaced by '+' or '-'")
        marks.append(tagged[end])
        pos = end + 1
    if tagged[pos:] != segments[-1]:
        raise InputError(path, line, "label", f"has more text than 'input' after its last ({n}th) step tag: "
                                              "expected one '+' or '-' per tag and nothing else changed")
    start = segments[0].rfind(FIRST_STEP)
    if start < 0 or not segments[0][:start].strip():
        raise InputError(path, line, "input", f"expected the question, then {FIRST_STEP!r} before the first tag")
    steps = [segments[0][start:].strip()] + [seg.strip() for seg in segments[1:-1]]
    for i, s in enumerate(steps):
        if not s:
            raise InputError(path, line, "input", f"step {i + 1} is empty (two tags {TAG!r} with nothing between)")
    labels = [1.0 if m == "+" else 0.0 for m in marks]
    return segments[0][:start].strip(), sep.join(steps), int(labels[-1]), steps, rec, labels


def is_prm800k(rec: dict) -> bool:
    return isinstance(rec.get("label"), dict) and "steps" in rec["label"]


def _rating(path, line, field: str, value, neutral: float) -> float:
    if type(value) is not int or value not in PRM800K_RATINGS:
        raise InputError(path, line, field, f"expected -1, 0 or 1, found {describe_json(value)}")
    return {1: 1.0, -1: 0.0, 0: neutral}[value]


def _prm800k_step(path, line, i: int, st, last: bool, neutral: float) -> tuple[str, float] | None:
    """(text, label) of the trajectory's step i, or None when the trajectory ends before it (see the docstring)."""
    where = f"label.steps[{i}]"
    if not isinstance(st, dict):
        raise InputError(path, line, where, f"expected an object, found {describe_json(st)}")
    comps = st.get("completions") or []
    if not isinstance(comps, list) or not all(isinstance(c, dict) for c in comps):
        raise InputError(path, line, f"{where}.completions", f"expected a list of objects, found {describe_json(comps)}")
    chosen, human = st.get("chosen_completion"), st.get("human_completion")
    if chosen is not None:
        if type(chosen) is not int or not 0 <= chosen < len(comps):
            raise InputError(path, line, f"{where}.chosen_completion", f"expected an index into the {len(comps)} "
                                                                       f"completions, found {describe_json(chosen)}")
        f = f"{where}.completions[{chosen}]"
        return (_string(path, line, f"{f}.text", comps[chosen].get("text")),
                _rating(path, line, f"{f}.rating", comps[chosen].get("rating"), neutral))
    if human is not None:  # a labeler-written +1 step (phase 1)
        text = human.get("text") if isinstance(human, dict) else human
        rating = human.get("rating") if isinstance(human, dict) else None
        return (_string(path, line, f"{where}.human_completion", text),
                1.0 if rating is None else _rating(path, line, f"{where}.human_completion.rating", rating, neutral))
    if not last:
        raise InputError(path, line, f"{where}.chosen_completion", "null with no human_completion before the last "
                                                                   "step: the trajectory cannot be followed")
    for j, c in enumerate(comps):
        if c.get("rating") == -1:
            return _string(path, line, f"{where}.completions[{j}].text", c.get("text")), 0.0
    return None


def prm800k_row(path, line, rec: dict, sep: str, neutral: float = 1.0) -> tuple:
    """A PRM800K record -> (problem, sep.join(steps), outcome from finish_reason, steps, rec, step labels)."""
    question = rec.get("question")
    if not isinstance(question, dict):
        raise InputError(path, line, "question", f"expected an object with 'problem', found {describe_json(question)}")
    prompt = _string(path, line, "question.problem", question.get("problem"))
    label = rec["label"]
    reason = label.get("finish_reason")
    if reason not in PRM800K_OUTCOME:
        raise InputError(path, line, "label.finish_reason", f"expected one of {sorted(PRM800K_OUTCOME)}, found "
                                                            f"{describe_json(reason)}")
    raw = label["steps"]
    if not isinstance(raw, list):
        raise InputError(path, line, "label.steps", f"expected a list, found {describe_json(raw)}")
    steps, labels = [], []
    for i, st in enumerate(raw):
        got = _prm800k_step(path, line, i, st, i == len(raw) - 1, neutral)
        if got is None:
            break
        steps.append(got[0])
        labels.append(got[1])
    if not steps:
        raise InputError(path, line, "label.steps", "no step on the labelled trajectory")
    return prompt, sep.join(steps), PRM800K_OUTCOME[reason], steps, rec, labels
