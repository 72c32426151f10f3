"""The model pool: which models exist, which are loaded, and who is using them.

Each model moves through one state machine, NOT_LOADED → LOADING → LOADED → UNLOADING →
NOT_LOADED, changed only here. Concurrent first requests share one load (single flight), and a
model is never unloaded while a request holds it. An engine whose process dies on its own
(LOADED → NOT_LOADED) is reloaded by the next request, with backoff after repeated crashes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from radis_mlx.config import Config, ModelEntry
from radis_mlx.engines import choose_engine, create_engine
from radis_mlx.engines.base import Engine
from radis_mlx.errors import EngineUnavailableError, ModelLoadError, ModelNotFoundError, RadisError
from radis_mlx.store import ModelStore

log = logging.getLogger(__name__)

EngineFactory = Callable[[str, ModelEntry], Awaitable[Engine]]

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


class ModelState(str, enum.Enum):
    NOT_LOADED = "not-loaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


@dataclass
class PoolSlot:
    """One servable model and its runtime state."""

    model_id: str
    entry: ModelEntry
    state: ModelState = ModelState.NOT_LOADED
    engine: Engine | None = None
    active: int = 0
    last_used: float = 0.0
    created: int = field(default_factory=lambda: int(time.time()))
    loaded_at: float = 0.0
    crashes: int = 0
    last_crash: float = 0.0
    _loading: asyncio.Task[Engine] | None = None
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()


class ModelPool:
    """Resolves model ids to loaded engines, loading on first use."""

    def __init__(self, config: Config, factory: EngineFactory | None = None) -> None:
        self.config = config
        self.store = ModelStore(config.cache_dir, base_dir=Path(config.base_dir))
        self._factory = factory or self._build_engine
        self._slots = {model_id: PoolSlot(model_id, entry) for model_id, entry in config.models.items()}
        self._closing: set[asyncio.Task[None]] = set()

    def slots(self) -> list[PoolSlot]:
        """Every servable model, in configuration order."""
        return list(self._slots.values())

    def get(self, model_id: str) -> PoolSlot:
        """The slot for a model id; 404 for ids we do not serve."""
        slot = self._slots.get(model_id)
        if slot is None:
            raise ModelNotFoundError(model_id)
        return slot

    @asynccontextmanager
    async def acquire(self, model_id: str) -> AsyncIterator[Engine]:
        """Hold a loaded engine for the duration of one request."""
        slot = self.get(model_id)
        engine = await self._ensure_loaded(slot)
        slot.active += 1
        slot._idle.clear()
        try:
            yield engine
        finally:
            slot.active -= 1
            slot.last_used = time.monotonic()
            if slot.active == 0:
                slot._idle.set()

    async def unload(self, model_id: str) -> bool:
        """Unload a model once its running requests finish; False if it was not loaded."""
        slot = self.get(model_id)
        if slot._loading is not None:
            await asyncio.gather(slot._loading, return_exceptions=True)
        if slot.state is not ModelState.LOADED or slot.engine is None:
            return False
        slot.state = ModelState.UNLOADING
        if slot.active:
            await slot._idle.wait()
        engine, slot.engine = slot.engine, None
        try:
            await engine.close()
        finally:
            slot.state = ModelState.NOT_LOADED
            log.info("unloaded %s", model_id)
        return True

    async def close(self) -> None:
        """Unload everything (server shutdown)."""
        await asyncio.gather(*(self.unload(s.model_id) for s in self.slots()), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _ensure_loaded(self, slot: PoolSlot) -> Engine:
        if slot.state is ModelState.UNLOADING:
            await slot._idle.wait()
            while slot.state is ModelState.UNLOADING:
                await asyncio.sleep(0.01)
        if slot.state is ModelState.LOADED and slot.engine is not None:
            return slot.engine
        if slot._loading is None:
            wait = slot.last_crash + restart_delay(slot.crashes) - time.monotonic()
            if wait > 0:
                raise EngineUnavailableError(
                    f"'{slot.model_id}' crashed {slot.crashes} times in a row; it restarts in {wait:.0f}s"
                )
            slot._loading = asyncio.create_task(self._load(slot))
        # shield: a client that gives up must not cancel a load other requests share.
        return await asyncio.shield(slot._loading)

    async def _load(self, slot: PoolSlot) -> Engine:
        slot.state = ModelState.LOADING
        started = time.monotonic()
        try:
            engine = await self._factory(slot.model_id, slot.entry)
        except BaseException:
            slot.state = ModelState.NOT_LOADED
            raise
        finally:
            slot._loading = None
        slot.engine, slot.state, slot.last_used = engine, ModelState.LOADED, time.monotonic()
        slot.loaded_at = slot.last_used
        if isinstance(engine, Supervised):
            engine.on_exit = lambda: self._engine_died(slot, engine)
        log.info("loaded %s on %s in %.1fs", slot.model_id, engine.info.name, time.monotonic() - started)
        return engine

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

    async def _build_engine(self, model_id: str, entry: ModelEntry) -> Engine:
        path = await asyncio.to_thread(self.store.materialize, entry.source)
        name, reason = choose_engine(entry, path)
        log.info("loading %s with the %s engine (%s)", model_id, name, reason)
        engine = create_engine(model_id, entry, path, self.config)
        try:
            await engine.start()
        except RadisError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"loading '{model_id}' failed: {type(exc).__name__}: {exc}") from exc
        return engine
