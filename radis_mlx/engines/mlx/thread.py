"""One thread per loaded MLX model, fed by a queue (the mlx-lm server's threading model).

Async code only awaits: every call into MLX for a model runs on that model's thread, and
results come back through futures or per-request queues, errors included. While a Stepper (the
batch scheduler) has work, the thread runs queued jobs between its steps instead of sleeping; once
it has had nothing to do for IDLE_RELEASE_SECONDS, it hands back the memory kept for reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from radis_mlx.engines.base import Engine
from radis_mlx.engines.mlx.memory import release_free_memory

T = TypeVar("T")
log = logging.getLogger(__name__)

_DONE = object()

# Long enough that back-to-back requests never wait for a release, short enough that a burst's
# peak does not stay resident.
IDLE_RELEASE_SECONDS = 1.0


class Emitter(Generic[T]):
    """Handed to a streaming job: emit() items to the awaiting request; check cancelled."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: asyncio.Queue[Any]) -> None:
        self._loop = loop
        self._sink = sink
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def emit(self, item: T | BaseException | object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._sink.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancel()

    def finish(self, error: BaseException | None = None) -> None:
        """End the stream, with an error raised to the awaiting request if given."""
        if error is not None:
            self.emit(error)
        self.emit(_DONE)


class Stepper(Protocol):
    """Work the thread advances one step at a time while it is busy (the batch scheduler)."""

    @property
    def busy(self) -> bool: ...

    def step(self) -> None: ...


class ModelThread:
    """A thread that owns one model, runs its jobs in order, and steps its Stepper in between."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.stepper: Stepper | None = None  # set and cleared on the model thread

    def start(self) -> None:
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the model thread and await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def job() -> None:
            try:
                result, error = fn(*args), None
            except BaseException as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, result, error)

        self._jobs.put(job)
        return await future

    def post(self, fn: Callable[[], None]) -> None:
        """Queue fn on the model thread without waiting: it hands out its own results (and errors)."""

        def job() -> None:
            try:
                fn()
            except Exception:
                log.exception("a job on %s failed", self._thread.name)

        self._jobs.put(job)

    async def stream(self, fn: Callable[[Emitter[T]], None]) -> AsyncIterator[T]:
        """Run fn(emitter) on the model thread; yield what it emits until emitter.finish().

        fn may return before the stream ends (the scheduler finishes it later); an exception
        from fn ends the stream with that error. Leaving early sets emitter.cancelled.
        """
        loop = asyncio.get_running_loop()
        sink: asyncio.Queue[Any] = asyncio.Queue()
        emitter: Emitter[T] = Emitter(loop, sink)

        def job() -> None:
            if emitter.cancelled:
                return
            try:
                fn(emitter)
            except BaseException as exc:
                emitter.finish(exc)

        self._jobs.put(job)
        try:
            while (item := await sink.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            emitter.cancel()

    async def close(self) -> None:
        """Finish queued jobs, then stop the thread."""
        if not self._thread.is_alive():
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        worked = False  # since the last release
        while True:
            stepper = self.stepper
            busy = stepper is not None and stepper.busy
            try:
                if busy:
                    job = self._jobs.get(block=False)
                else:
                    job = self._jobs.get(timeout=IDLE_RELEASE_SECONDS if worked else None)
            except queue.Empty:
                if stepper is not None and busy:  # nothing queued: advance the batch by one step
                    stepper.step()
                else:  # idle for a while after some work
                    release_free_memory()
                worked = busy
                continue
            if job is None:
                return
            job()
            worked = True


class ThreadedEngine(Engine):
    """An engine whose model lives on one ModelThread: start() runs _load there, close() _unload."""

    _thread: ModelThread
    _model: Any = None
    _tokenizer: Any = None

    async def start(self) -> None:
        self._thread.start()
        try:
            await self._thread.call(self._load)
        except BaseException:
            await self._thread.close()
            raise

    async def close(self) -> None:
        await self._thread.call(self._unload)
        await self._thread.close()

    def _load(self) -> None:
        """Load the model (on the model thread)."""
        raise NotImplementedError

    def _unload(self) -> None:
        """Drop the model and free what MLX caches (on the model thread)."""
        self._model = self._tokenizer = None
        release_free_memory()
