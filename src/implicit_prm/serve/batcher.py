"""Dynamic batching for the reward server: requests that arrive within a short window are scored together, up to a
token budget, on one scoring thread; a request whose client went away is dropped from its batch, and the others
go on."""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class Work:
    encs: list  # Encoded responses of one request
    future: asyncio.Future
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """`await batcher.submit(encs)` -> the scorer's records for them, scored with whatever else arrived within
    `window_s` (up to `max_tokens` padded tokens of sequences per batch)."""

    def __init__(self, scorer, window_s: float = 0.005, max_tokens: int = 16384):
        self.scorer, self.window_s, self.max_tokens = scorer, window_s, max_tokens
        self.queue: asyncio.Queue[Work] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")  # torch runs one batch at once
        self.batches = 0
        self.scored = 0
        self.dropped = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, encs: list, disconnected=None, poll_s: float = 0.05) -> list[dict] | None:
        """The records for `encs`; None when `disconnected()` (an async callable, e.g. Starlette's
        `request.is_disconnected`) says the client went away first: its work is then cancelled, and a batch that has
        not started drops it."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Work(encs, future))
        try:
            while disconnected is not None:
                done, _ = await asyncio.wait({future}, timeout=poll_s)
                if done:
                    break
                if await disconnected():
                    future.cancel()
                    return None
            return await future
        finally:
            future.cancel()  # a cancelled handler (the server stopping) drops its work too; no-op when done

    async def _gather(self) -> list[Work]:
        loop = asyncio.get_running_loop()
        items = [await self.queue.get()]
        tokens = sum(len(e) for e in items[0].encs)
        deadline = loop.time() + self.window_s
        while tokens < self.max_tokens:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                item = await asyncio.wait_for(self.queue.get(), left)
            except asyncio.TimeoutError:
                break
            items.append(item)
            tokens += sum(len(e) for e in item.encs)
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            live = [w for w in items if not w.future.done()]  # cancelled: the client went away
            self.dropped += len(items) - len(live)
            if not live:
                continue
            encs = [e for w in live for e in w.encs]
            try:
                records = await loop.run_in_executor(self.executor, self.scorer.score_encoded, encs)
            except Exception as e:  # noqa: BLE001 - every waiting request hears of it; the server goes on
                for w in live:
                    if not w.future.done():
                        w.future.set_exception(e)
                continue
            self.batches += 1
            self.scored += len(encs)
            i = 0
            for w in live:
                if not w.future.done():
                    w.future.set_result(records[i:i + len(w.encs)])
                i += len(w.encs)
