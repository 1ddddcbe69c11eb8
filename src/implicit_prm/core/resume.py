"""Resuming killed runs, one way for train, score and rollout: run signatures, and partial files with torn last lines.

A run's signature is what its results depend on: every config field except those declared free to change between
a run and its restart (progress bars, batch sizes that do not change results, cache locations), plus facts the
config does not hold (the input file's size and mtime, model fingerprints). A partial file is JSONL: a header line
with the signature, then one finished item per line, appended and flushed as the run goes. A kill can tear the last
line; reading stops there. A partial file from a run with another signature is discarded, naming what changed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import to_dict
from .errors import UserError
from .io import atomic_open


def run_signature(cfg, free: Iterable[str], **facts: Any) -> dict:
    """The fields of `cfg` not in `free`, plus `facts` (JSON-able), as one dict."""
    free = set(free)
    return {**{k: v for k, v in to_dict(cfg).items() if k not in free}, **facts}


def changed_fields(old: Mapping, new: Mapping, defaults: Mapping | None = None) -> list[str]:
    """The keys of `new` whose values differ in `old`. Keys only in `old` are ignored (fields since removed), and so
    is a key only in `new` that holds its value in `defaults` (a field added since, left at its default)."""
    defaults = defaults or {}
    added = {k for k in new if k not in old and k in defaults and _jsonable(defaults[k]) == _jsonable(new[k])}
    return sorted(k for k in new if k not in added and _jsonable(old.get(k)) != _jsonable(new[k]))


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))  # tuples -> lists, as a JSON round trip sees them


def check_same_run(saved: Mapping, signature: Mapping, where: Path, defaults: Mapping | None = None) -> None:
    """Refuse to resume into `where` when the saved run's signature differs from this one's (`defaults`: see
    changed_fields)."""
    diff = changed_fields(saved, signature, defaults)
    if diff:
        raise UserError(f"{where} holds a run with a different config (fields {diff}); use a new --output or delete "
                        "the directory")


def read_jsonl_prefix(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file up to its first undecodable line (a torn last line from a kill)."""
    items = []
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(item, dict):
            break
        items.append(item)
    return items


class PartialFile:
    """A partial output a killed run resumes from: a signature header, then one finished item per line.

    Sharded runs (several processes) write one file each: rank 0 `<path>`, rank r `<path>.<r>`; `read` gathers all
    of them, so a run may resume with another number of processes.
    """

    def __init__(self, path: Path, signature: Mapping, rank: int = 0):
        self.rank, self.main = rank, Path(path)
        self.path = self.main if rank == 0 else self.main.with_name(f"{self.main.name}.{rank}")
        self.header = {"signature": _jsonable(dict(signature))}

    def shards(self) -> list[Path]:
        return [self.main] + sorted(self.main.parent.glob(self.main.name + ".[0-9]*"))

    def read(self) -> list[dict]:
        """Finished items of a run with this signature, from every shard; [] (with a message) for another run's."""
        items: list[dict] = []
        for p in self.shards():
            if not p.exists():
                continue
            lines = read_jsonl_prefix(p)
            if not lines or lines[0] != self.header:
                if lines and self.rank == 0:
                    old = lines[0].get("signature")
                    why = (f"a run with other settings ({', '.join(changed_fields(old, self.header['signature']))})"
                           if isinstance(old, dict) else "an older version's format")
                    print(f"[implicit-prm] {p} is from {why}: starting over", flush=True)
                continue
            items += lines[1:]
        return items

    def resume(self, group) -> list[dict]:
        """The finished items of every shard, for every process of `group` (a ProcessGroup); then one file again:
        the main process rewrites its own with all of them (dropping torn last lines and other runs' records) and
        removes the other shards, the others start empty. A sharded run so resumes with any number of processes."""
        items = self.read()
        group.wait_for_everyone()  # every process has read the same finished items
        if group.is_main_process:
            self.restart(items)
            self.drop_other_shards()
        group.wait_for_everyone()
        if not group.is_main_process:
            self.restart()
        return items

    def restart(self, items: Iterable[dict] = ()) -> None:
        """Rewrite this process's file as the header plus `items` (drops torn lines and other runs' records)."""
        with atomic_open(self.path) as f:
            f.write(json.dumps(self.header) + "\n")
            f.writelines(json.dumps(item) + "\n" for item in items)

    def drop_other_shards(self) -> None:
        for p in self.shards()[1:]:
            p.unlink()

    def appender(self):
        """Append mode on this process's file; call `restart` first. Each `add(item)` is flushed at once."""
        return _Appender(self.path)

    def remove(self) -> None:
        for p in self.shards():
            p.unlink(missing_ok=True)


class _Appender:
    def __init__(self, path: Path):
        self.f = open(path, "a", encoding="utf-8")

    def add(self, item: dict) -> None:
        self.f.write(json.dumps(item) + "\n")
        self.f.flush()

    def __enter__(self) -> "_Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
