"""On-disk cache of per-token log-probs of a model, keyed by the model's fingerprint, precision and token ids.

It holds the reference model's log-probs (frozen, so those of a (prompt, response) never change: training computes
them once before the first step, and scoring new checkpoints on the same responses reuses them) and a scored PRM's
own (re-scoring the same responses with another aggregation or split needs no forward pass).
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..models.loading import cache_root
from ..steps.encoding import Encoded


def entry_key(model_key: str, enc: Encoded) -> str:
    h = hashlib.sha1(model_key.encode())
    h.update(np.asarray(enc.prompt_ids, dtype=np.int64).tobytes())
    h.update(b"|")
    h.update(np.asarray(enc.response_ids, dtype=np.int64).tobytes())
    return h.hexdigest()


class LogProbCache:
    """A sqlite file of float32 arrays: key -> log-probs of the response tokens. Safe for concurrent readers."""

    def __init__(self, path: str | Path, model_key: str):
        self.path, self.model_key = Path(path), model_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS ref (key TEXT PRIMARY KEY, logps BLOB)")
        self.db.execute("CREATE TABLE IF NOT EXISTS fingerprint (stat TEXT PRIMARY KEY, fp TEXT)")
        self.db.commit()

    def keys(self, encs: Sequence[Encoded]) -> list[str]:
        return [entry_key(self.model_key, e) for e in encs]

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):
            part = uniq[s:s + 500]
            rows = self.db.execute(f"SELECT key, logps FROM ref WHERE key IN ({','.join('?' * len(part))})", part)
            found.update((k, np.frombuffer(b, dtype=np.float32)) for k, b in rows)
        return found

    def put(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO ref VALUES (?, ?)",
                            [(k, np.asarray(a, dtype=np.float32).tobytes()) for k, a in items])
        self.db.commit()

    def get_fingerprint(self, stat: str) -> str | None:
        """Weight fingerprint of a local model dir, memoized by its files' paths, sizes and mtimes."""
        row = self.db.execute("SELECT fp FROM fingerprint WHERE stat = ?", (stat,)).fetchone()
        return row[0] if row else None

    def put_fingerprint(self, stat: str, fp: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO fingerprint VALUES (?, ?)", (stat, fp))
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "LogProbCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_cache_file() -> Path:
    """logprobs.sqlite in the cache dir; a cache from before its rename (refcache.sqlite) is kept in use."""
    # compatibility: a refcache.sqlite from before the rename to logprobs.sqlite stays in use; warn (or move it) in
    # 0.2, remove in 0.3
    new, old = cache_root() / "logprobs.sqlite", cache_root() / "refcache.sqlite"
    return old if old.exists() and not new.exists() else new


def open_cache(setting: str, model_key: str) -> LogProbCache | None:
    """'' -> the default cache file; 'none' -> no cache; anything else -> that file."""
    if setting.lower() == "none":
        return None
    return LogProbCache(Path(setting) if setting else default_cache_file(), model_key)
