"""Answer grading: pull the final answer out of a response and check it against the gold answer with math-verify.

Extraction (`extract_answer`, style "auto" tries the rules in this order; the other styles use one rule):
  1. "boxed":       the last `\\boxed{...}` / `\\fbox{...}` whose braces balance (nesting such as
                    `\\boxed{\\frac{1}{2}}` is kept whole; escaped `\\{ \\}` do not count; an empty box is skipped).
  2. "answer is":   the last "The answer is X" / "the final answer is X" / "Answer: X" (any case, `**` allowed);
                    X is a `$...$`, `\\(...\\)` or `\\[...\\]` group if one starts there, else the rest of the line
                    up to the first sentence-ending period; a trailing period and `$` signs are stripped.
                    A plain sentence with exactly one number ("Verna received $7.00 in change") gives the number.
  3. "gsm8k":       the last `#### N` (the rest of that line).
  4. "last_number": the last number in the text: integers, decimals, negatives, thousands separators (1,000)
                    and fractions a/b. A '-' glued to a word or digit before it ("3-5") is not a sign.
  Nothing found -> None.

Which style to use for references (`reference_answer` picks it from the text itself):
  GSM8K   the `answer` field ends in `#### N`          -> style "gsm8k"
  MATH    the final answer is the last \\boxed{} of `solution` -> style "boxed"
  MATH500 the `answer` field is already the bare answer -> used as is
Model responses are graded with "auto".

Equivalence (`is_equivalent`): both answers are normalized (see `normalize_answer`), compared as strings, then
parsed and compared by math-verify (`verify(gold, pred)`: the order matters, the gold goes first). A verifier that
raises or runs past its time limit is a grading *error* (Grade.status "error", counted by `summarize`), never a
silent "wrong".
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import signal
import threading
import time
from collections import Counter
from fractions import Fraction
from typing import Iterable

STYLES = ("auto", "boxed", "gsm8k", "last_number")
STATUSES = ("ok", "no_answer", "error")


class GradingError(RuntimeError):
    """The verifier raised or timed out: the answer could not be graded (counted as status "error", not as wrong)."""


# ---------------------------------------------------------------------------------------------------- extraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS_RE = re.compile(r"\banswer\b\s*\**\s*(?:is\b\s*:?|:)\s*\**[ \t]*", re.IGNORECASE)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_NUMBER_RE = re.compile(
    r"(-?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,234 or 1,234.5
    r"|\d+(?:\.\d+)?/\d+(?:\.\d+)?"  # 3/4
    r"|\d+(?:\.\d+)?"  # 12 or 12.5
    r"|\.\d+)"  # .5
    r"(?![\d,]*\d)")
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _balanced_from(text: str, start: int) -> str | None:
    """The text from `start` up to the brace closing an already-open '{', or None when it never closes."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "\\":  # \{ and \} are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _extract_boxed(text: str) -> str | None:
    for m in reversed(list(_BOXED_RE.finditer(text))):
        content = _balanced_from(text, m.end())
        if content is not None and content.strip():
            return content.strip()
    return None


def _clean_tail(ans: str) -> str:
    """Strip the decoration around an answer: spaces, bold, trailing periods, `$` and \\( \\) / \\[ \\]."""
    prev = None
    while ans != prev:
        prev = ans
        ans = ans.strip().strip("*").strip().rstrip(".").strip()
        for left, right in _DELIMS:
            if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
                ans = ans[len(left):len(ans) - len(right)]
        if len(re.findall(r"(?<!\\)\$", ans)) % 2:  # a lone "$": "18$" or "$18" (money)
            ans = ans[:-1] if ans.endswith("$") and not ans.endswith("\\$") else ans.lstrip("$")
    return ans


def _extract_answer_is(text: str) -> str | None:
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        rest = text[m.end():]
        ans = None
        for left, right in _DELIMS:
            if rest.startswith(left):
                end = rest.find(right, len(left))
                if end > 0:
                    ans = rest[len(left):end]
                break
        if ans is None:
            line = rest.split("\n", 1)[0]
            ans = re.split(r"\.(?=\s|$)", line, maxsplit=1)[0]  # up to the sentence's end; keeps 3.5
        ans = _clean_tail(ans)
        if ans:
            return _number_in_prose(ans)
    return None


def _number_in_prose(ans: str) -> str:
    """"Verna received $7.00 in change" -> "7.00": a plain sentence (no LaTeX) holding exactly one number."""
    if "\\" in ans or not re.search(r"[A-Za-z]{3,}", ans):
        return ans
    numbers = list(_NUMBER_RE.finditer(ans))
    return _number_text(ans, numbers[0]) if len(numbers) == 1 else ans


def _extract_gsm8k(text: str) -> str | None:
    for m in reversed(list(_GSM8K_RE.finditer(text))):
        ans = _clean_tail(m.group(1))
        if ans:
            return ans
    return None


def _extract_last_number(text: str) -> str | None:
    matches = list(_NUMBER_RE.finditer(text))
    if not matches:
        return None
    return _number_text(text, matches[-1])


def _number_text(text: str, m: re.Match) -> str:
    sign = m.group(1)
    if sign and m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in ")]}"):
        sign = ""  # "3-5" is a difference, not -5
    return sign + m.group(2)


_RULES = {"boxed": _extract_boxed, "answer_is": _extract_answer_is, "gsm8k": _extract_gsm8k,
          "last_number": _extract_last_number}


def extract_answer(text: str, style: str = "auto") -> str | None:
    """The final answer of a response, by the rules in the module docstring; None when nothing is found."""
    if style not in STYLES:
        raise ValueError(f"unknown extraction style {style!r}; expected one of {list(STYLES)}")
    if text is None:
        return None
    rules = ("boxed", "answer_is", "gsm8k", "last_number") if style == "auto" else (style,)
    for rule in rules:
        ans = _RULES[rule](text)
        if ans is not None:
            return ans
    return None


def reference_answer(reference: str) -> str:
    """The bare gold answer of a reference: after `####` for a GSM8K answer, the last \\boxed{} for a MATH
    solution, else the reference itself (already bare, as MATH500's `answer`). Empty string if nothing is left."""
    ref = str(reference).strip()
    if "####" in ref:
        return _extract_gsm8k(ref) or ""
    if _BOXED_RE.search(ref):
        return _extract_boxed(ref) or ""
    return _clean_tail(ref)


# ---------------------------------------------------------------------------------------------------- equivalence

_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_TEXT_UNIT_RE = re.compile(r"^(.*?\d.*?)\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z.\s]*\}(?:\^\{?\d\}?)?$")
_WORD_UNIT_RE = re.compile(r"^(-?(?:\d[\d,]*)?\.?\d+(?:/\d+)?)\s*(?!pi\b)[A-Za-z]{2,}[A-Za-z.\s]*(?:\^\{?\d\}?)?$")
_TEXT_ONLY_RE = re.compile(r"^\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}$")


def normalize_answer(ans: str) -> str:
    """A canonical string for an answer: no `$`/`\\( \\)`/trailing period, \\dfrac and \\tfrac -> \\frac,
    no \\left/\\right or thin spaces, no degree sign, no trailing unit (`5\\text{ cm}`, `5 dollars`),
    no thousands separators in a plain number (`1,000` -> `1000`), `%` -> `\\%`, a lone `\\text{X}` -> X."""
    s = _clean_tail(str(ans))
    s = s.replace("\\$", "").replace("{,}", ",")
    s = re.sub(r"^\\(?=\d)", "", s)  # "\15": a dollar sign that lost its "$"
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\left\b|\\right\b|\\[!,;:]|\\displaystyle", "", s).replace("~", " ")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", s)
    s = re.sub(r"(?<!\\)%", r"\\%", s)
    for _ in range(2):  # "5\text{ cm}^2", then a plain "5 dollars"
        s = _TEXT_UNIT_RE.sub(r"\1", s.strip())
        s = _WORD_UNIT_RE.sub(r"\1", s.strip())
    s = s.strip()
    m = _TEXT_ONLY_RE.match(s)
    if m:
        s = m.group(1).strip()
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    return _clean_tail(s)


def _string_key(s: str) -> str:
    """Spaces dropped; plain words (no digits or LaTeX, as "Evelyn") compared case-insensitively; "(B)" -> "b"."""
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^\(([A-Za-z])\)$", r"\1", s)  # a multiple-choice letter
    return s.casefold() if re.fullmatch(r"[A-Za-z()]+", s) else s


class _Timeout(BaseException):
    """Raised by our SIGALRM handler; a BaseException so that sympy's and math-verify's `except Exception` let it
    through (math-verify's own TimeoutException is a BaseException for the same reason)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise _Timeout after `seconds` (SIGALRM, so main thread only; elsewhere, and with seconds <= 0, no limit).

    One timer covers the whole parse + verify: math-verify's own per-call alarms are turned off, since nested
    alarms would cancel ours. A timer the caller had running is restarted afterwards with its remaining time.
    """
    if (not seconds or seconds <= 0 or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - t0), 1e-3))


class _DropTimeoutWarning(logging.Filter):
    """math-verify warns once that its timeout is off; we run our own timer (`_time_limit`), so drop that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.grader", "math_verify.parser"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def _wrap(ans: str) -> str:
    """Put a bare answer where math-verify's LaTeX extractor looks: in \\boxed{} when its braces balance."""
    return f"\\boxed{{{ans}}}" if _balanced_from(ans + "}", 0) == ans else f"${ans.replace('$', '')}$"


def _mv_equal(pred: str, gold: str) -> bool:
    """math-verify on two normalized bare answers (no timeouts of its own; errors raise)."""
    from math_verify import parse, verify

    g = parse(_wrap(gold), parsing_timeout=None, raise_on_error=True)
    p = parse(_wrap(pred), parsing_timeout=None, raise_on_error=True)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=None, raise_on_error=True))  # gold first: verify is not symmetric


def is_equivalent(pred: str | None, gold: str, timeout_s: float = 5.0) -> bool:
    """True when the predicted answer equals the gold answer mathematically (0.5 = \\frac12 = 1/2 = 50\\% of 1...).

    Normalized strings are compared first (this is also the fallback when math-verify parses nothing), then
    math-verify compares the parsed forms. Raises GradingError when math-verify raises or runs past `timeout_s`
    seconds (enforced with SIGALRM in the main thread; in other threads there is no time limit).
    """
    if pred is None:
        return False
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if _string_key(p) == _string_key(g):
        return True
    try:
        with _time_limit(timeout_s):
            return _mv_equal(p, g)
    except _Timeout:
        raise GradingError(f"math-verify timed out after {timeout_s}s comparing {pred!r} with gold {gold!r}") from None
    except Exception as e:  # noqa: BLE001 - any verifier failure is reported as a grading error, never as "wrong"
        raise GradingError(f"math-verify failed comparing {pred!r} with gold {gold!r}: "
                           f"{type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------------------------- grading


@dataclasses.dataclass
class Grade:
    """One graded response. status: "ok" (graded), "no_answer" (nothing extracted), "error" (verifier failed)."""

    extracted: str | None
    correct: bool
    status: str


def grade(response: str, gold: str, style: str = "auto", timeout_s: float = 5.0) -> Grade:
    """Extract the response's answer and compare it with the gold (a bare answer, or a full GSM8K/MATH reference)."""
    extracted = extract_answer(response, style)
    if extracted is None:
        return Grade(None, False, "no_answer")
    try:
        return Grade(extracted, is_equivalent(extracted, reference_answer(gold), timeout_s), "ok")
    except GradingError:
        return Grade(extracted, False, "error")


def summarize(grades: Iterable[Grade]) -> dict:
    """Counts: n, n_correct, one n_<status> per status, and accuracy over all n (failures count as not correct)."""
    grades = list(grades)
    counts = Counter(g.status for g in grades)
    n = len(grades)
    n_correct = sum(g.correct for g in grades)
    return {"n": n, "n_correct": n_correct, **{f"n_{s}": counts.get(s, 0) for s in STATUSES},
            "accuracy": n_correct / n if n else None}






_PLAIN_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


_FRACTION_RE = re.compile(r"([+-]?)(?:(\d+)/(\d+)|\\frac\{([+-]?\d+)\}\{(\d+)\}|\\frac(\d)(\d))")


def vote_key(answer: str) -> str | None:
    """The key under which an answer votes: the grader's `normalize_answer`, then its `_string_key` (spaces dropped,
    plain words case-folded), then exact numbers in one form: a plain number, a/b, \\frac{a}{b} or \\frac ab -> the
    reduced fraction ("1,000" = "1000" = "1000.0"; "0.5" = "1/2" = "\\frac12" = "\\dfrac{1}{2}"). A string key, so
    votes are counted without math-verify (which `grade` uses): forms it would equate beyond these (2^3 vs 8,
    \\sqrt{4} vs 2) vote apart. None when nothing is left after normalisation (the answer does not vote)."""
    key = _string_key(normalize_answer(answer))
    if not key:
        return None
    m = None if len(key) > 100 else _FRACTION_RE.fullmatch(key)  # long digit strings keep their text
    if _PLAIN_NUMBER_RE.fullmatch(key) and len(key) <= 100:
        return str(Fraction(key))
    if m:
        sign, *parts = m.groups()
        num, den = next((a, b) for a, b in zip(parts[::2], parts[1::2]) if a is not None)
        if int(den):
            return str(Fraction(int(num), int(den)) * (-1 if sign == "-" else 1))
    return key
