"""Input validation helpers shared by every reader: describing a bad JSON value, checking text is encodable."""
from __future__ import annotations

from .errors import InputError


def describe_json(value) -> str:
    """A short description of a JSON value for error messages: its JSON type and a preview."""
    kind = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}
    name = "null" if value is None else kind.get(type(value), type(value).__name__)
    preview = repr(value)
    return f"{name} {preview[:40] + '...' if len(preview) > 40 else preview}"


def _encodable(path, line, field: str, value: str) -> None:
    """JSON can escape a lone surrogate (\\ud800), which is no character: refuse it before a tokenizer sees it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(path, line, field, f"contains an unpaired surrogate escape (\\u{ord(value[e.start]):04x}) "
                                            "at character " + str(e.start)) from None
