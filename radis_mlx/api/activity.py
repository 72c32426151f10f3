"""The last minutes of requests and generated tokens, for GET /api/v0/activity (api/metrics.py).

`History` is a fixed ring of HISTORY_BUCKETS intervals of HISTORY_SECONDS each (ten minutes): its
memory never grows. The dashboard draws its chart from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from radis_mlx.schemas.admin import ActivityBucket

HISTORY_SECONDS = 5
HISTORY_BUCKETS = 120


@dataclass
class _Bucket:
    index: int  # unix time // interval
    requests: int = 0
    failed: int = 0
    tokens: float = 0.0


class History:
    """Requests and generated tokens per interval over the last `size` intervals (a fixed ring)."""

    def __init__(self, interval: float = HISTORY_SECONDS, size: int = HISTORY_BUCKETS) -> None:
        self.interval = interval
        self.size = size
        self._ring = [_Bucket(-1) for _ in range(size)]

    def _bucket(self, index: int, now: float) -> _Bucket | None:
        newest = int(now // self.interval)
        if not newest - self.size < index <= newest:
            return None  # older than the ring holds (or in the future)
        bucket = self._ring[index % self.size]
        if bucket.index != index:  # a slot last used a full ring ago: start it afresh
            bucket.index, bucket.requests, bucket.failed, bucket.tokens = index, 0, 0, 0.0
        return bucket

    def count_request(self, failed: bool, now: float | None = None) -> None:
        """A request that ended now."""
        now = time.time() if now is None else now
        bucket = self._bucket(int(now // self.interval), now)
        if bucket is not None:
            bucket.requests += 1
            bucket.failed += failed

    def add_tokens(self, tokens: int, start: float, end: float, now: float | None = None) -> None:
        """Tokens generated between `start` and `end` (unix times), spread evenly over that span."""
        now = time.time() if now is None else now
        start = min(start, end)
        span = end - start
        oldest = int(now // self.interval) - self.size + 1  # the loop stays within the ring
        for index in range(max(int(start // self.interval), oldest), int(end // self.interval) + 1):
            bucket = self._bucket(index, now)
            if bucket is None:
                continue
            if span <= 0:
                bucket.tokens += tokens
                continue
            overlap = min(end, (index + 1) * self.interval) - max(start, index * self.interval)
            bucket.tokens += tokens * max(overlap, 0.0) / span

    def buckets(self, now: float | None = None) -> list[ActivityBucket]:
        """Every interval of the ring, oldest first, the current (partial) one last."""
        now = time.time() if now is None else now
        newest = int(now // self.interval)
        report = []
        for index in range(newest - self.size + 1, newest + 1):
            bucket = self._ring[index % self.size]
            counts = bucket if bucket.index == index else _Bucket(index)
            report.append(
                ActivityBucket(
                    start=index * self.interval,
                    requests=counts.requests,
                    failed=counts.failed,
                    tokens=round(counts.tokens, 2),
                    tokens_per_second=round(counts.tokens / self.interval, 2),
                )
            )
        return report


def per_second(tokens: int, seconds: float) -> float | None:
    """A decoding speed, or None when there is nothing to divide."""
    if tokens <= 0 or seconds <= 0 or not math.isfinite(seconds):
        return None
    return round(tokens / seconds, 2)
