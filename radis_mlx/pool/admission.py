"""Backpressure: per model, a bounded number of generations in service and a bounded wait queue.

A request takes one place per generation it runs at once (n choices, several prompts), at most
`limit`. It enters service at once while its places are free and nobody waits; otherwise it joins a
FIFO queue of at most `max_queue` requests. A full queue refuses at once (429 queue_full); a request
still queued after `timeout` seconds gives up (503 queue_timeout). Both carry a Retry-After estimated
from recent service times. Places a finishing request frees go straight to the oldest waiters, so
nobody overtakes the queue and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from radis_mlx.config import Config, ModelEntry
from radis_mlx.engines.registry import default_concurrency
from radis_mlx.errors import QueueFullError, QueueTimeoutError

MAX_RETRY_AFTER = 60


@dataclass
class AdmissionStats:
    in_service: int = 0
    queued: int = 0
    admitted: int = 0
    rejected: int = 0
    timed_out: int = 0


class Admission:
    """One model's gate: `async with gate.enter(): ...` holds a place in service."""

    def __init__(self, model_id: str, limit: int, max_queue: int, timeout: float) -> None:
        self.model_id = model_id
        self.limit = limit
        self.max_queue = max_queue
        self.timeout = timeout
        self.stats = AdmissionStats()
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()
        self._service_seconds = 1.0  # moving average, for Retry-After

    @asynccontextmanager
    async def enter(self, generations: int = 1) -> AsyncIterator[None]:
        """Hold places in service (one per generation run at once, at most `limit`) for the body of the
        `with`; 429/503 when there are none."""
        places = max(1, min(generations, self.limit))
        await self._take(places)
        started = time.monotonic()
        try:
            yield
        finally:
            self._service_seconds += (time.monotonic() - started - self._service_seconds) * 0.2
            self._release(places)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead, served `limit` at a time."""
        rounds = (len(self._waiters) + 1) / self.limit
        return max(1, min(MAX_RETRY_AFTER, math.ceil(rounds * self._service_seconds)))

    async def _take(self, places: int) -> None:
        if self.stats.in_service + places <= self.limit and not self._waiters:
            self.stats.in_service += places
            self.stats.admitted += 1
            return
        if len(self._waiters) >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFullError(self.model_id, len(self._waiters), self.retry_after())
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((turn, places))
        self.stats.queued = len(self._waiters)
        try:
            await asyncio.wait_for(turn, self.timeout)
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._release(places)  # our places were handed over just as we gave up: pass them on
            else:
                if (turn, places) in self._waiters:  # not yet dropped by a hand-over
                    self._waiters.remove((turn, places))
                self._hand_over()  # those behind us may fit now
            if isinstance(exc, asyncio.TimeoutError):
                self.stats.timed_out += 1
                raise QueueTimeoutError(self.model_id, self.timeout, self.retry_after()) from None
            raise
        self.stats.admitted += 1

    def _release(self, places: int) -> None:
        self.stats.in_service -= places
        self._hand_over()

    def _hand_over(self) -> None:
        """Free places to the oldest waiters, in order, while the next one fits."""
        while self._waiters:
            turn, places = self._waiters[0]
            if turn.done():  # gave up already; its cleanup is on the way
                self._waiters.popleft()
                continue
            if self.stats.in_service + places > self.limit:
                break
            self._waiters.popleft()
            self.stats.in_service += places
            turn.set_result(None)
        self.stats.queued = len(self._waiters)


def admission_for(model_id: str, entry: ModelEntry, config: Config) -> Admission:
    """The gate for a model: the entry's limits over [pool]'s, else the engine's parallelism."""
    pool = config.pool
    limit = entry.max_concurrent or pool.max_concurrent
    if limit is None:
        # The source's suffix is what choose_engine looks at (GGUF or MLX-format), before any download.
        limit = default_concurrency(entry, Path(entry.source), config)
    max_queue = entry.max_queue if entry.max_queue is not None else pool.max_queue
    timeout = entry.queue_timeout or pool.queue_timeout
    return Admission(model_id, limit, max_queue, timeout)
