"""The model pool: which models exist, which are loaded, and who is using them.

Each model moves through one state machine, NOT_LOADED → LOADING → LOADED → UNLOADING →
NOT_LOADED, changed only here. Concurrent first requests share one load (single flight), and a
model is never unloaded while a request holds it. An engine whose process dies on its own
(LOADED → NOT_LOADED) is reloaded by the next request, with backoff after repeated crashes.

Memory: before a load the model's bytes are estimated from its files (budget.py); when the loaded
models plus the new one would exceed the budget, idle models are unloaded least recently used
first (never pinned ones, never one serving a request). A model that cannot fit even alone is
refused before loading (507). Idle models unload after their TTL (request > entry > [pool]).

Backpressure: each request first passes its model's admission gate (admission.py): a bounded
number in service, a bounded FIFO queue behind them (429 when full, 503 after queue_timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from radis_mlx.config import Config, ModelEntry
from radis_mlx.engines.base import Engine
from radis_mlx.errors import EngineUnavailableError, ModelTooLargeError
from radis_mlx.pool import budget
from radis_mlx.pool.admission import Admission, admission_for
from radis_mlx.pool.budget import GIB, Estimate
from radis_mlx.pool.catalog import Catalog
from radis_mlx.pool.loader import Loader
from radis_mlx.pool.state import ModelState, PoolSlot
from radis_mlx.store import ModelStore

log = logging.getLogger(__name__)

EngineFactory = Callable[[str, ModelEntry], Awaitable[Engine]]
Estimator = Callable[[str, ModelEntry], Awaitable[Estimate]]

# An engine that ran this long before dying starts a fresh crash count.
CRASH_RESET_SECONDS = 60.0
MAX_RESTART_DELAY = 30.0


@runtime_checkable
class Supervised(Protocol):
    """An engine whose process can die on its own; it calls on_exit when that happens."""

    on_exit: Callable[[], None] | None


def restart_delay(crashes: int) -> float:
    """Seconds to wait after the latest of `crashes` crashes in a row: 0, 1, 2, 4 … 30."""
    return 0.0 if crashes <= 1 else min(2.0 ** (crashes - 2), MAX_RESTART_DELAY)


class ModelPool:
    """Resolves model ids to loaded engines, loading on first use."""

    def __init__(
        self,
        config: Config,
        factory: EngineFactory | None = None,
        *,
        estimator: Estimator | None = None,
        clock: Callable[[], float] = time.monotonic,
        discover_models: bool | None = None,
    ) -> None:
        self.config = config
        self.store = ModelStore(config.cache_dir, base_dir=Path(config.base_dir))
        self.loader = Loader(config, self.store)
        self._factory = factory or self.loader.build
        # A custom (test) factory has no files to estimate unless it brings an estimator.
        self._estimator = estimator or (self.loader.estimate if factory is None else _no_estimate)
        self.clock = clock
        gib = config.pool.memory_budget_gib
        self.budget_bytes = int(gib * GIB) if gib else budget.default_budget()
        discover_models = factory is None if discover_models is None else discover_models
        self.catalog = Catalog(config, self.store, discover=discover_models)
        self._closing: set[asyncio.Task[None]] = set()
        self._reserving = asyncio.Lock()  # one memory reservation at a time
        self._released = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.evictions: list[tuple[str, str]] = []  # (model id, why), newest last
        self._gates: dict[str, Admission] = {}

    def slots(self) -> list[PoolSlot]:
        """Every servable model: configured ones first, then discovered ones."""
        return self.catalog.slots()

    def get(self, model_id: str) -> PoolSlot:
        """The slot for a model id or alias; 404 for ids we do not serve."""
        return self.catalog.get(model_id)

    def refresh(self) -> None:
        """Pick up models that appeared on disk (pulls, mlx-lm downloads) and drop deleted ones."""
        self.catalog.refresh()

    def effective_ttl(self, slot: PoolSlot) -> float | None:
        """Idle seconds before unloading; None: never (pinned, or no TTL configured)."""
        if slot.pinned:
            return None
        ttl = slot.ttl or slot.entry.ttl or self.config.pool.ttl
        return float(ttl) if ttl else None

    def ttl_left(self, slot: PoolSlot) -> float | None:
        """Seconds until an idle loaded model unloads; None when it never does."""
        ttl = self.effective_ttl(slot)
        if ttl is None or slot.state is not ModelState.LOADED:
            return None
        return ttl if slot.active else max(0.0, slot.last_used + ttl - self.clock())

    def used_bytes(self) -> int:
        """Bytes held or reserved by every model."""
        return sum(slot.held_bytes for slot in self.slots())

    @asynccontextmanager
    async def acquire(
        self, model_id: str, *, ttl: float | None = None, unload_after: bool = False
    ) -> AsyncIterator[Engine]:
        """Hold a loaded engine for the duration of one request; `ttl` sets its idle TTL from now on,
        `unload_after` unloads it once the request (and any other on it) is done."""
        slot = self.get(model_id)
        if ttl is not None:
            slot.ttl = ttl
        async with self.admission(slot.model_id).enter():  # 429/503 when the model is saturated
            engine = await self._ensure_loaded(slot)
            while slot.engine is not engine or slot.state is not ModelState.LOADED:
                engine = await self._ensure_loaded(slot)  # evicted between its load and our resumption
            slot.active += 1
            slot.idle.clear()
            try:
                yield engine
            finally:
                slot.active -= 1
                slot.last_used = self.clock()
                if slot.active == 0:
                    slot.idle.set()
                    self._released.set()
                if unload_after:
                    self.unload_soon(slot.model_id)

    def admission(self, model_id: str) -> Admission:
        """The backpressure gate of a model (created on its first request)."""
        slot = self.get(model_id)
        gate = self._gates.get(slot.model_id)
        if gate is None:
            gate = self._gates[slot.model_id] = admission_for(slot.model_id, slot.entry, self.config)
        return gate

    async def start(self, reap_interval: float = 1.0) -> None:
        """Begin TTL expiry and load `preload = true` models (server startup)."""
        self._spawn(self._reap(reap_interval))
        for slot in self.slots():
            if slot.entry.preload:
                self._spawn(self._preload(slot))

    async def expire(self) -> list[str]:
        """Unload every idle model past its TTL; the ids unloaded."""
        now = self.clock()
        expired = [
            s
            for s in self.slots()
            if s.state is ModelState.LOADED
            and not s.active
            and (ttl := self.effective_ttl(s)) is not None
            and now - s.last_used >= ttl
        ]
        done = [s.model_id for s in expired if await self.unload(s.model_id, reason="ttl")]
        return done

    async def unload(self, model_id: str, *, reason: str = "request") -> bool:
        """Unload a model once its running requests finish; False if it was not loaded."""
        slot = self.get(model_id)
        model_id = slot.model_id
        if slot.loading is not None:
            await asyncio.gather(slot.loading, return_exceptions=True)
        if slot.state is not ModelState.LOADED or slot.engine is None:
            return False
        slot.state = ModelState.UNLOADING
        if slot.active:
            await slot.idle.wait()
        engine, slot.engine = slot.engine, None
        try:
            await engine.close()
        finally:
            slot.state, slot.measured_bytes = ModelState.NOT_LOADED, 0
            self._released.set()
            if reason != "request":
                self.evictions.append((model_id, reason))
            log.info("unloaded %s (%s)", model_id, reason)
        return True

    def unload_soon(self, model_id: str) -> None:
        """Unload a model in the background once its requests finish (Ollama's `keep_alive: 0`)."""
        self._spawn(self._unload_quietly(model_id))

    async def _unload_quietly(self, model_id: str) -> None:
        try:
            await self.unload(model_id)
        except Exception:
            log.exception("unloading %s failed", model_id)

    async def close(self) -> None:
        """Unload everything (server shutdown)."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self.unload(s.model_id) for s in self.slots()), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _ensure_loaded(self, slot: PoolSlot) -> Engine:
        if slot.state is ModelState.UNLOADING:
            await slot.idle.wait()
            while slot.state is ModelState.UNLOADING:
                await asyncio.sleep(0.01)
        if slot.state is ModelState.LOADED and slot.engine is not None:
            return slot.engine
        if slot.loading is None:
            wait = slot.last_crash + restart_delay(slot.crashes) - time.monotonic()
            if wait > 0:
                raise EngineUnavailableError(
                    f"'{slot.model_id}' crashed {slot.crashes} times in a row; it restarts in {wait:.0f}s"
                )
            slot.loading = asyncio.create_task(self._load(slot))
        # shield: a client that gives up must not cancel a load other requests share.
        return await asyncio.shield(slot.loading)

    async def _load(self, slot: PoolSlot) -> Engine:
        slot.state = ModelState.LOADING
        started = time.monotonic()
        try:
            slot.estimate = None
            await self._reserve(slot, await self._estimator(slot.model_id, slot.entry))
            engine = await self._factory(slot.model_id, slot.entry)
        except BaseException:
            slot.state = ModelState.NOT_LOADED
            self._released.set()  # its reservation is free again
            raise
        finally:
            slot.loading = None
        slot.engine, slot.state, slot.last_used = engine, ModelState.LOADED, self.clock()
        slot.loaded_at, slot.measured_bytes = time.monotonic(), engine.info.size_bytes
        slot.loads += 1
        if isinstance(engine, Supervised):
            engine.on_exit = lambda: self._engine_died(slot, engine)
        log.info("loaded %s on %s in %.1fs", slot.model_id, engine.info.name, time.monotonic() - started)
        return engine

    async def _reserve(self, slot: PoolSlot, estimate: Estimate) -> None:
        """Reserve room for a load: evict idle models, LRU first; refuse what can never fit."""
        need = estimate.total
        if need > self.budget_bytes:
            raise ModelTooLargeError(slot.model_id, need, self.budget_bytes)
        async with self._reserving:
            while True:
                others = [s for s in self.slots() if s is not slot]
                if sum(s.held_bytes for s in others) + need <= self.budget_bytes:
                    slot.estimate = estimate  # the reservation: counted from here on
                    return
                loaded = [s for s in others if s.state is ModelState.LOADED and not s.pinned]
                idle = sorted((s for s in loaded if not s.active), key=lambda s: s.last_used)
                if idle:
                    await self.unload(idle[0].model_id, reason=f"memory for {slot.model_id}")
                    continue
                if not loaded and not any(s.state is ModelState.LOADING and s.held_bytes for s in others):
                    pinned = sum(s.held_bytes for s in others)
                    raise ModelTooLargeError(slot.model_id, need, self.budget_bytes - pinned, beside=True)
                # Every candidate is serving a request: wait for one to finish.
                self._released.clear()
                try:
                    await asyncio.wait_for(self._released.wait(), self.config.server.request_timeout)
                except asyncio.TimeoutError:
                    raise EngineUnavailableError(
                        f"no memory for '{slot.model_id}': the loaded models stayed busy"
                    ) from None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reap(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire()
            except Exception:
                log.exception("TTL expiry failed")

    async def _preload(self, slot: PoolSlot) -> None:
        try:
            await self._ensure_loaded(slot)
        except Exception as exc:
            log.error("preloading %s failed: %s", slot.model_id, getattr(exc, "message", exc))

    def _engine_died(self, slot: PoolSlot, engine: Engine) -> None:
        """LOADED → NOT_LOADED for an engine whose process died; its requests fail on their own."""
        if slot.engine is not engine or slot.state is not ModelState.LOADED:
            return  # already handled, or an unload is closing it
        now = time.monotonic()
        slot.crashes = slot.crashes + 1 if now - slot.loaded_at < CRASH_RESET_SECONDS else 1
        slot.engine, slot.state, slot.last_crash = None, ModelState.NOT_LOADED, now
        log.warning(
            "%s died (%d crash(es) in a row); it reloads on the next request", slot.model_id, slot.crashes
        )
        task = asyncio.create_task(engine.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _no_estimate(model_id: str, entry: ModelEntry) -> Estimate:
    return Estimate(0)
