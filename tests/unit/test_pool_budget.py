"""The pool's memory budget, LRU eviction, TTL expiry and pinning on a fake engine and a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from radis_mlx.config import Config, ModelEntry, PoolSettings
from radis_mlx.errors import ModelTooLargeError
from radis_mlx.pool import ModelPool, ModelState
from radis_mlx.pool.budget import GIB, Estimate
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(sizes_gib, budget_gib=1.0, ttl=None, clock=None, delay=0.0, **entries):
    """A pool of fake models named after `sizes_gib`'s keys, each estimated at that many GiB."""
    models = {name: entries.get(name, ModelEntry(source="/nowhere")) for name in sizes_gib}
    config = Config(pool=PoolSettings(memory_budget_gib=budget_gib, ttl=ttl), models=models)
    loads, engines = [], {}

    async def factory(model_id, entry):
        loads.append(model_id)
        engine = FakeEngine(delay=delay)
        await engine.start()
        engines.setdefault(model_id, []).append(engine)
        return engine

    async def estimator(model_id, entry):
        return Estimate(int(sizes_gib[model_id] * GIB * 0.75), int(sizes_gib[model_id] * GIB * 0.25))

    pool = ModelPool(config, factory=factory, estimator=estimator, clock=clock or Clock())
    return pool, loads, engines


async def use(pool, model, **kwargs):
    async with pool.acquire(model, **kwargs):
        pass


def states(pool):
    return {s.model_id: s.state.value for s in pool.slots()}


async def test_least_recently_used_idle_model_is_evicted_first():
    clock = Clock()
    pool, _, engines = make_pool({"a": 0.4, "b": 0.4, "c": 0.4}, clock=clock)
    await use(pool, "a")
    clock.now += 1
    await use(pool, "b")
    clock.now += 1
    await use(pool, "a")  # a is now the most recent
    clock.now += 1
    await use(pool, "c")
    assert states(pool) == {"a": "loaded", "b": "not-loaded", "c": "loaded"}
    assert engines["b"][0].closed == 1
    assert pool.evictions == [("b", "memory for c")]
    assert pool.used_bytes() <= pool.budget_bytes


async def test_a_model_larger_than_the_budget_is_refused_before_loading():
    pool, loads, _ = make_pool({"small": 0.2, "huge": 1.5})
    await use(pool, "small")
    with pytest.raises(ModelTooLargeError) as caught:
        await use(pool, "huge")
    assert caught.value.status_code == 507 and caught.value.code == "model_too_large"
    assert "1.50 GiB" in caught.value.message
    assert loads == ["small"] and states(pool) == {"small": "loaded", "huge": "not-loaded"}


async def test_pinned_models_are_never_evicted():
    pinned = ModelEntry(source="/nowhere", pinned=True)
    pool, _, _ = make_pool({"p": 0.5, "a": 0.4, "b": 0.4}, p=pinned)
    await use(pool, "p")
    await use(pool, "a")
    await use(pool, "b")  # only a can make room
    assert states(pool) == {"p": "loaded", "a": "not-loaded", "b": "loaded"}


async def test_a_model_that_fits_only_without_the_pinned_ones_is_refused():
    pinned = ModelEntry(source="/nowhere", pinned=True)
    pool, _, _ = make_pool({"p": 0.6, "big": 0.6}, p=pinned)
    await use(pool, "p")
    with pytest.raises(ModelTooLargeError, match="pinned"):
        await use(pool, "big")
    assert states(pool) == {"p": "loaded", "big": "not-loaded"}


async def test_a_busy_model_is_not_evicted_the_load_waits_for_it():
    pool, _, engines = make_pool({"a": 0.6, "b": 0.6})
    order = []

    async def long_request():
        async with pool.acquire("a"):
            await asyncio.sleep(0.1)
            order.append("a done")

    running = asyncio.create_task(long_request())
    await asyncio.sleep(0.01)
    await use(pool, "b")
    order.append("b loaded")
    await running
    assert order == ["a done", "b loaded"] and engines["a"][0].closed == 1


async def test_idle_ttl_expires_and_a_running_request_keeps_its_model():
    clock = Clock()
    pool, _, _ = make_pool({"a": 0.1, "b": 0.1}, ttl=60, clock=clock)
    await use(pool, "a")
    async with pool.acquire("b"):
        clock.now += 61
        assert await pool.expire() == ["a"]  # b is busy: its TTL counts from its last use
    assert states(pool) == {"a": "not-loaded", "b": "loaded"}
    assert pool.ttl_left(pool.get("b")) == 60
    clock.now += 59
    assert await pool.expire() == []
    clock.now += 1
    assert await pool.expire() == ["b"]


async def test_per_request_ttl_overrides_entry_and_global_ttl():
    clock = Clock()
    entry = ModelEntry(source="/nowhere", ttl=300)
    pool, _, _ = make_pool({"a": 0.1, "b": 0.1}, ttl=3600, clock=clock, a=entry)
    await use(pool, "a")
    await use(pool, "b", ttl=5)
    assert pool.ttl_left(pool.get("a")) == 300 and pool.ttl_left(pool.get("b")) == 5
    clock.now += 6
    assert await pool.expire() == ["b"]
    clock.now += 300
    assert await pool.expire() == ["a"]


async def test_pinned_models_never_expire():
    clock = Clock()
    pool, _, _ = make_pool({"p": 0.1}, ttl=1, clock=clock, p=ModelEntry(source="/nowhere", pinned=True))
    await use(pool, "p")
    clock.now += 10_000
    assert await pool.expire() == [] and pool.ttl_left(pool.get("p")) is None


async def test_concurrent_first_requests_of_two_models_never_exceed_the_budget():
    pool, loads, _ = make_pool({"a": 0.6, "b": 0.6, "c": 0.3}, delay=0.02)
    peak = 0

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, pool.used_bytes())
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(use(pool, m) for m in ["a", "b", "c", "a", "b", "c"] * 3))
    watcher.cancel()
    assert peak <= pool.budget_bytes
    assert pool.get("a").loads >= 1 and loads.count("c") >= 1


async def test_concurrent_first_requests_share_one_load_under_a_budget():
    pool, loads, _ = make_pool({"a": 0.5}, delay=0.05)
    await asyncio.gather(*(use(pool, "a") for _ in range(10)))
    assert loads == ["a"] and pool.get("a").state is ModelState.LOADED


async def test_measured_bytes_replace_the_weights_estimate():
    pool, _, _ = make_pool({"a": 0.4})
    await use(pool, "a")
    slot = pool.get("a")
    assert slot.held_bytes == slot.estimate.total  # the fake engine measures nothing
    slot.measured_bytes = 1000
    assert slot.held_bytes == 1000 + slot.estimate.kv_cache


async def test_aliases_reach_the_same_slot():
    entry = ModelEntry(source="/nowhere", aliases=["short", "other"])
    pool, loads, _ = make_pool({"long-name": 0.1}, **{"long-name": entry})
    await use(pool, "short")
    await use(pool, "long-name")
    assert loads == ["long-name"] and pool.get("other") is pool.get("long-name")
