"""Readers of TRL's and OpenRLHF's dataset formats, as their owners publish them, into the rows formats.py makes
Samples of (prompt, response, outcome label, steps, record, step labels):

- trl-stepwise (TRL's stepwise supervision, e.g. trl-lib/math_shepherd, trl-lib/prm800k): `prompt`,
  `completions` (the list of steps) and `labels` (one bool per step). Pre-split with step labels; the outcome label
  is the last step's label, as Math-Shepherd defines it (a response is right when its last step is).
- trl-preference: `prompt`, `chosen`, `rejected`, or the implicit-prompt form (`chosen` and `rejected`
  conversations that start with the same prompt turns). Two rows, chosen labelled 1 and rejected 0, that pair only
  with each other (DPO and NCA train on that pair; CE and KTO on the two labels).
- trl-unpaired (TRL's unpaired preference): `prompt`, `completion`, `label` (bool).
- openrlhf-prm (OpenRLHF's PRM data): `input`, the response with a step tag after each step, and `label`, one
  label per tag (`+`/`-`, or numbers in [0, 1]); the tag comes from --step-tag (default Math-Shepherd's "ки"),
  other keys map through --columns (e.g. `label=value`).
Conversational fields (a list of {"role", "content"} messages) are read where TRL accepts them: the prompt's
user turn, the completion's assistant turns.
"""
from __future__ import annotations

from ..core.errors import InputError
from ..core.validation import describe_json
from .step_formats import FIRST_STEP, TAG


def _str(path, line, field: str, value, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or not (allow_empty or value.strip()):
        raise InputError(path, line, field, f"expected non-empty text, found {describe_json(value)}")
    return value


def _messages(path, line, field: str, value) -> list[dict]:
    if not isinstance(value, list) or not value or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value):
        raise InputError(path, line, field, "expected text or a non-empty list of {\"role\", \"content\"} messages, "
                                            f"found {describe_json(value)}")
    return value


def prompt_text(path, line, field: str, value) -> str:
    """A prompt given as text, or as chat messages ending in one user turn (earlier turns or a system message per
    record are refused: this package applies one chat template with one --system-prompt)."""
    if isinstance(value, str):
        return _str(path, line, field, value)
    msgs = _messages(path, line, field, value)
    if len(msgs) != 1 or msgs[0]["role"] != "user":
        raise InputError(path, line, field, f"a conversational prompt must be one user turn, found roles "
                                            f"{[m['role'] for m in msgs]} (give a system message with "
                                            "--system-prompt)")
    return _str(path, line, f"{field}[0].content", msgs[0]["content"])


def completion_text(path, line, field: str, value, allow_empty: bool = False) -> str:
    """A completion given as text, or as assistant messages (joined). `allow_empty`: a policy's own sample may be
    empty (end of text at once), unlike a completion in a data file."""
    if isinstance(value, str):
        return _str(path, line, field, value, allow_empty)
    msgs = _messages(path, line, field, value)
    if any(m["role"] != "assistant" for m in msgs):
        raise InputError(path, line, field, f"a conversational completion holds assistant turns only, found roles "
                                            f"{[m['role'] for m in msgs]}")
    return _str(path, line, field, "".join(m["content"] for m in msgs), allow_empty)


def _bool(path, line, field: str, value) -> int:
    if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
        return int(value)
    raise InputError(path, line, field, f"expected true/false, found {describe_json(value)}")


def stepwise_row(path, line, rec: dict, sep: str) -> tuple:
    prompt = prompt_text(path, line, "prompt", rec.get("prompt"))
    steps = rec.get("completions")
    if not isinstance(steps, list) or not steps:
        raise InputError(path, line, "completions", f"expected the list of steps, found {describe_json(steps)}")
    steps = [_str(path, line, f"completions[{i}]", s) for i, s in enumerate(steps)]
    labels = rec.get("labels")
    if not isinstance(labels, list) or len(labels) != len(steps):
        raise InputError(path, line, "labels", f"expected one true/false per step ({len(steps)}), found "
                                               f"{describe_json(labels)}")
    step_y = [float(_bool(path, line, f"labels[{i}]", v)) for i, v in enumerate(labels)]
    return prompt, sep.join(steps), int(step_y[-1]), steps, rec, step_y


def _implicit_prompt(path, line, rec: dict) -> tuple[str, object, object]:
    """(prompt, chosen answer, rejected answer) of a preference record without `prompt`: the shared leading
    turns of the two conversations are the prompt."""
    chosen = _messages(path, line, "chosen", rec["chosen"])
    rejected = _messages(path, line, "rejected", rec["rejected"])
    k = next((i for i, m in enumerate(chosen) if m["role"] == "assistant"), len(chosen))
    if k == 0 or chosen[:k] != rejected[:k]:
        raise InputError(path, line, "rejected", "without 'prompt', 'chosen' and 'rejected' must start with the "
                                                 "same prompt turns")
    return prompt_text(path, line, "chosen", chosen[:k]), chosen[k:], rejected[k:]


def preference_rows(path, line, rec: dict) -> list[tuple]:
    if "prompt" in rec:
        prompt, chosen, rejected = prompt_text(path, line, "prompt", rec["prompt"]), rec["chosen"], rec["rejected"]
    else:
        prompt, chosen, rejected = _implicit_prompt(path, line, rec)
    good = completion_text(path, line, "chosen", chosen)
    bad = completion_text(path, line, "rejected", rejected)
    return [(prompt, good, 1, None, {**rec, "response": good, "preference": "chosen"}, None),
            (prompt, bad, 0, None, {**rec, "response": bad, "preference": "rejected"}, None)]


def unpaired_row(path, line, rec: dict) -> tuple:
    prompt = prompt_text(path, line, "prompt", rec.get("prompt"))
    response = completion_text(path, line, "completion", rec.get("completion"))
    label = None if rec.get("label") is None else _bool(path, line, "label", rec["label"])
    return prompt, response, label, None, {**rec, "response": response}, None


def _openrlhf_label(path, line, field: str, value) -> float:
    if value in ("+", "-"):
        return 1.0 if value == "+" else 0.0
    if isinstance(value, (bool, int, float)) and 0.0 <= value <= 1.0:
        return float(value)
    raise InputError(path, line, field, f"expected '+', '-' or a number in [0, 1], found {describe_json(value)}")


def openrlhf_row(path, line, rec: dict, sep: str, tag: str | None = None) -> tuple:
    """`input` = question, then each step followed by the tag; `label` = one label per tag."""
    tag = tag or TAG
    text = _str(path, line, "input", rec.get("input"))
    labels = rec.get("label")
    pieces = text.split(tag)
    if len(pieces) < 2 or pieces[-1].strip():
        raise InputError(path, line, "input", f"expected a step tag {tag!r} after every step (set it with "
                                              "--step-tag), with nothing after the last one")
    if not isinstance(labels, list) or len(labels) != len(pieces) - 1:
        raise InputError(path, line, "label", f"expected one label per step tag ({len(pieces) - 1}), found "
                                              f"{describe_json(labels)}")
    head = pieces[0]
    start = head.rfind(FIRST_STEP)  # the question, then "Step 1: ..." (Math-Shepherd), else the last line
    start = start if start > 0 and head[:start].strip() else head.rstrip().rfind("\n") + 1
    if start <= 0 or not head[:start].strip():
        raise InputError(path, line, "input", f"expected the question, then {FIRST_STEP!r} or a new line before "
                                              "the first step")
    question, steps = head[:start].strip(), [head[start:].strip()] + [p.strip() for p in pieces[1:-1]]
    if not all(steps):
        raise InputError(path, line, "input", "an empty step between two step tags")
    step_y = [_openrlhf_label(path, line, f"label[{i}]", v) for i, v in enumerate(labels)]
    return question, sep.join(steps), int(step_y[-1] == 1.0), steps, rec, step_y
