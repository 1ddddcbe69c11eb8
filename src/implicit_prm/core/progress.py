"""Progress of long commands: tqdm's bar on a terminal; anywhere else (a SLURM log, a pipe, a file) one plain line
every `every` units, or every 10% of the work when `every` is 0, with the values the bar shows and an ETA, instead
of tqdm's redraws."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm.auto import tqdm


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class PlainProgress:
    """tqdm's `update` / `set_postfix` / `close`, printing a line when a multiple of `every` units is passed (and
    at the end), e.g. `[implicit-prm] score: 40/100 tok (40%), 12.5 tok/s, ETA 4s, loss=0.69`."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "", unit: str = "it", every: int = 0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.every = every or max(1, (total or 10) // 10)
        self.stream, self.clock = stream or sys.stderr, clock
        self.start, self.t0, self.postfix, self.printed_at = initial, clock(), {}, None

    def line(self) -> str:
        elapsed = max(self.clock() - self.t0, 1e-9)
        rate = (self.n - self.start) / elapsed
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_duration(max(self.total - self.n, 0) / rate)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return f"[implicit-prm] {self.desc}: " + ", ".join(parts)

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.n // self.every > before // self.every:
            self._print()

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.printed_at = self.n

    def close(self) -> None:
        if self.printed_at != self.n and self.n > self.start:
            self._print()


def progress(total: int | None, desc: str, unit: str = "it", show: bool = True, initial: int = 0, every: int = 0,
             stream: TextIO | None = None):
    """A progress display: nothing when not `show`, tqdm's bar on a terminal, else PlainProgress lines."""
    stream = stream or sys.stderr
    if not show or stream.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not show, file=stream)
    return PlainProgress(total, initial, desc, unit, every, stream)
