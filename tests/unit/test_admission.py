"""The admission gate on a fake engine: bounded service, FIFO queue, 429 when full, 503 on timeout."""

from __future__ import annotations

import asyncio

import pytest

from radis_mlx.config import Config, EngineSettings, LlamaCppSettings, ModelEntry, PoolSettings
from radis_mlx.engines.registry import MLX_CONCURRENCY
from radis_mlx.errors import QueueFullError, QueueTimeoutError
from radis_mlx.generation.types import GenerationRequest
from radis_mlx.pool import ModelPool
from radis_mlx.pool.admission import Admission, admission_for
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio


async def hold(gate: Admission, release: asyncio.Event, log: list[int], index: int) -> None:
    async with gate.enter():
        log.append(index)
        await release.wait()


async def test_waiters_enter_in_order_as_places_free():
    gate = Admission("m", limit=2, max_queue=8, timeout=5)
    release, entered = asyncio.Event(), []
    tasks = [asyncio.create_task(hold(gate, release, entered, i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert entered == [0, 1] and gate.stats.in_service == 2 and gate.stats.queued == 3
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3, 4]
    assert gate.stats.in_service == 0 and gate.stats.queued == 0 and gate.stats.admitted == 5


async def test_a_full_queue_refuses_at_once_with_retry_after():
    gate = Admission("m", limit=1, max_queue=2, timeout=5)
    release, entered = asyncio.Event(), []
    tasks = [asyncio.create_task(hold(gate, release, entered, i)) for i in range(3)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError) as refused:
        async with gate.enter():
            pass
    error = refused.value
    assert error.status_code == 429 and error.type == "rate_limit_error" and error.code == "queue_full"
    assert int(error.headers["retry-after"]) >= 1 and gate.stats.rejected == 1
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2]


async def test_a_request_waiting_too_long_gets_503_and_leaves_the_queue():
    gate = Admission("m", limit=1, max_queue=4, timeout=0.05)
    release, entered = asyncio.Event(), []
    first = asyncio.create_task(hold(gate, release, entered, 0))
    await asyncio.sleep(0.01)
    with pytest.raises(QueueTimeoutError) as waited:
        async with gate.enter():
            pass
    assert waited.value.status_code == 503 and waited.value.code == "queue_timeout"
    assert "retry-after" in waited.value.headers
    assert gate.stats.queued == 0 and gate.stats.timed_out == 1
    release.set()
    await first
    assert gate.stats.in_service == 0


async def test_a_cancelled_waiter_frees_its_place_in_the_queue():
    gate = Admission("m", limit=1, max_queue=1, timeout=5)
    release, entered = asyncio.Event(), []
    first = asyncio.create_task(hold(gate, release, entered, 0))
    waiter = asyncio.create_task(hold(gate, release, entered, 1))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    third = asyncio.create_task(hold(gate, release, entered, 2))  # the queue has room again
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(first, third)
    assert entered == [0, 2] and gate.stats.in_service == 0


async def hold_many(
    gate: Admission, generations: int, release: asyncio.Event, log: list[int], index: int
) -> None:
    async with gate.enter(generations):
        log.append(index)
        await release.wait()


async def test_a_request_takes_a_place_per_generation_and_keeps_its_turn():
    gate = Admission("m", limit=4, max_queue=8, timeout=5)
    release, entered = asyncio.Event(), []
    first = asyncio.create_task(hold_many(gate, 3, release, entered, 0))
    await asyncio.sleep(0.01)
    # 3 of 4 places taken: a request of 2 generations waits, and a single one behind it does not overtake.
    big = asyncio.create_task(hold_many(gate, 2, release, entered, 1))
    small = asyncio.create_task(hold_many(gate, 1, release, entered, 2))
    await asyncio.sleep(0.01)
    assert entered == [0] and gate.stats.in_service == 3 and gate.stats.queued == 2
    release.set()
    await asyncio.gather(first, big, small)
    assert entered == [0, 1, 2] and gate.stats.in_service == 0 and gate.stats.queued == 0
    # More generations than the model's limit take the whole model, not more (else they never enter).
    release.clear()
    huge = asyncio.create_task(hold_many(gate, 128, release, entered, 3))
    await asyncio.sleep(0.01)
    assert entered[-1] == 3 and gate.stats.in_service == 4
    release.set()
    await huge
    assert gate.stats.in_service == 0


async def test_defaults_follow_the_engine():
    config = Config(engines=EngineSettings(llamacpp=LlamaCppSettings(parallel=3)))
    gguf = ModelEntry(source="pypi:x/y/model.gguf", engine="llamacpp")
    mlx = ModelEntry(source="pypi:x/y/model.gguf", engine="mlx")
    assert admission_for("a", gguf, config).limit == 3
    assert admission_for("b", mlx, config).limit == MLX_CONCURRENCY
    tight = ModelEntry(source="/m", max_concurrent=1, max_queue=0, queue_timeout=2)
    gate = admission_for("c", tight, Config(pool=PoolSettings(max_queue=9)))
    assert (gate.limit, gate.max_queue, gate.timeout) == (1, 0, 2)


async def test_the_pool_refuses_beyond_the_queue_and_serves_the_rest():
    entry = ModelEntry(source="/nowhere", max_concurrent=2, max_queue=2)
    engine = FakeEngine(delay=0.02)

    async def factory(model_id, entry):
        return engine

    pool = ModelPool(Config(models={"m": entry}), factory=factory)

    async def request():
        async with pool.acquire("m") as used:
            return [c.text async for c in used.generate(GenerationRequest(prompt="hi", max_tokens=3))]

    results = await asyncio.gather(*(request() for _ in range(6)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, QueueFullError)]
    served = [r for r in results if isinstance(r, list)]
    assert len(refused) == 2 and len(served) == 4
    assert pool.admission("m").stats.in_service == 0
