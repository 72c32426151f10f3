"""A model's thread hands back the memory kept for reuse once it has been idle, once per idle spell."""

from __future__ import annotations

import asyncio
import time

import pytest

from radis_mlx.engines.mlx import memory, thread
from radis_mlx.engines.mlx.thread import ModelThread


class Batch:
    """A stepper that stays busy for a given number of steps."""

    def __init__(self) -> None:
        self.steps_left = 0

    @property
    def busy(self) -> bool:
        return self.steps_left > 0

    def step(self) -> None:
        time.sleep(0.01)
        self.steps_left -= 1


@pytest.fixture
def releases(monkeypatch) -> list[float]:
    times: list[float] = []
    monkeypatch.setattr(thread, "IDLE_RELEASE_SECONDS", 0.2)
    monkeypatch.setattr(thread, "release_free_memory", lambda: times.append(time.monotonic()))
    return times


def test_release_follows_work_after_the_idle_delay_and_not_again_while_idle(releases):
    async def main() -> None:
        model_thread = ModelThread("test")
        model_thread.start()
        await asyncio.sleep(0.5)
        assert releases == []  # never worked: nothing to hand back
        finished = time.monotonic()
        await model_thread.call(lambda: None)
        await asyncio.sleep(0.6)
        assert len(releases) == 1
        assert releases[0] - finished >= 0.2
        await asyncio.sleep(0.5)
        assert len(releases) == 1  # one release per idle spell, not one per timeout
        await model_thread.close()

    asyncio.run(main())


def test_no_release_while_the_batch_is_busy(releases):
    async def main() -> None:
        model_thread = ModelThread("test")
        batch = Batch()
        model_thread.stepper = batch
        model_thread.start()

        def start_batch() -> None:
            batch.steps_left = 60  # ~0.6 s of steps, longer than the idle delay

        await model_thread.call(start_batch)
        started = time.monotonic()
        while batch.busy:
            await asyncio.sleep(0.02)
        drained = time.monotonic()
        assert drained - started > 0.4
        await asyncio.sleep(0.5)
        assert len(releases) == 1
        assert releases[0] >= drained
        await model_thread.close()

    asyncio.run(main())


def test_release_free_memory_runs_here():
    # The real thing: empties MLX's cache and, on glibc, trims malloc's arenas without error.
    memory.release_free_memory()
    if memory.sys.platform.startswith("linux"):
        assert memory._malloc_trim() is not None
