"""The pool's state machine on a fake engine: single-flight loads, no unload under a request."""

from __future__ import annotations

import asyncio

import pytest

from radis_mlx.config import Config, ModelEntry
from radis_mlx.errors import ModelLoadError, ModelNotFoundError
from radis_mlx.pool import ModelPool, ModelState
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio


def make_pool(engine_factory):
    config = Config(models={"m": ModelEntry(source="/nowhere")})
    loads = []

    async def factory(model_id, entry):
        loads.append(model_id)
        engine = engine_factory()
        await engine.start()
        return engine

    return ModelPool(config, factory=factory), loads


async def test_concurrent_first_requests_share_one_load():
    pool, loads = make_pool(lambda: FakeEngine(delay=0.05))

    async def use():
        async with pool.acquire("m") as engine:
            return engine

    engines = await asyncio.gather(*(use() for _ in range(8)))
    assert loads == ["m"] and len({id(e) for e in engines}) == 1
    assert pool.get("m").state is ModelState.LOADED


async def test_unknown_model_is_not_found():
    pool, _ = make_pool(FakeEngine)
    with pytest.raises(ModelNotFoundError):
        async with pool.acquire("other"):
            pass


async def test_unload_waits_for_the_running_request():
    pool, _ = make_pool(FakeEngine)
    order = []

    async def request():
        async with pool.acquire("m") as engine:
            await asyncio.sleep(0.05)
            order.append(("request done", engine.closed))

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    assert await pool.unload("m")
    await task
    assert order == [("request done", 0)]
    assert pool.get("m").state is ModelState.NOT_LOADED


async def test_failed_load_leaves_the_slot_unloaded_and_can_retry():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ModelLoadError("first load fails")
        return FakeEngine()

    pool, _ = make_pool(flaky)
    with pytest.raises(ModelLoadError):
        async with pool.acquire("m"):
            pass
    assert pool.get("m").state is ModelState.NOT_LOADED
    async with pool.acquire("m") as engine:
        assert engine.started == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load():
    pool, loads = make_pool(lambda: FakeEngine(delay=0.1))

    async def use():
        async with pool.acquire("m"):
            pass

    impatient = asyncio.create_task(use())
    patient = asyncio.create_task(use())
    await asyncio.sleep(0.02)
    impatient.cancel()
    await patient
    assert loads == ["m"] and pool.get("m").state is ModelState.LOADED


async def test_close_unloads_everything():
    engines = []

    def build():
        engines.append(FakeEngine())
        return engines[-1]

    pool, _ = make_pool(build)
    async with pool.acquire("m"):
        pass
    await pool.close()
    assert engines[0].closed == 1 and pool.get("m").state is ModelState.NOT_LOADED
