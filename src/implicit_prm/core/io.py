"""File helpers: JSONL reading with line numbers, and atomic writes (nothing half-written survives a crash)."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import InputError


def read_json_records(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, record) from a JSONL file, or (item_number, record) from a JSON array file.

    Blank lines are skipped. Malformed JSON or a non-object record raises InputError naming the line.
    """
    text = read_text(path)
    if text.lstrip().startswith("["):  # a JSON array, as ProcessBench ships
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(path, e.lineno, None, f"malformed JSON: {e.msg}") from None
        except RecursionError:
            raise InputError(path, None, None, "JSON nested too deeply") from None
        for i, rec in enumerate(items, start=1):
            if not isinstance(rec, dict):
                raise InputError(path, i, None, f"item {i} is {type(rec).__name__}, expected a JSON object")
            yield i, rec
        return
    # split at "\n" only: str.splitlines() would also split at U+2028, U+2029 and U+0085, which JSON strings may
    # hold raw (write_jsonl writes them so); json.loads ignores a trailing "\r"
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, lineno, None, f"malformed JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise InputError(path, lineno, None, "JSON nested too deeply") from None
        if not isinstance(rec, dict):
            raise InputError(path, lineno, None, f"expected a JSON object, got {type(rec).__name__}")
        yield lineno, rec


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file (gzip-compressed when it ends in .gz); a missing or undecodable file is an InputError
    naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, None, "file not found")
    if path.is_dir():
        raise InputError(path, None, None, "is a folder, not a file")
    try:
        if path.suffix == ".gz":  # data.jsonl.gz: the same reader, line numbers of the decompressed text
            with gzip.open(path, "rb") as f:
                return f.read().decode("utf-8")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not UTF-8 text (undecodable byte at offset {e.start})") from None
    except (OSError, EOFError) as e:  # a truncated or non-gzip .gz
        raise InputError(path, None, None, f"cannot read it: {e}") from None


def read_json_file(path: str | os.PathLike) -> Any:
    """One JSON document (a metadata or config file); malformed JSON is an InputError naming file and line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, None, f"malformed JSON: {e.msg} (column {e.colno})") from None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary file beside `path`; rename it over `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSONL atomically; returns the number written."""
    n = 0
    with atomic_open(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document atomically (indented, for humans)."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_open(path) as f:
        f.write(text)
