"""What Ollama's routes share: model names, NDJSON framing, a generation under its lease with its timing.

Ollama's names: `x` and `x:latest` are one model, matched case-insensitively when no id matches exactly.
NDJSON: one JSON object and a newline per chunk, never a blank line (the official clients parse every
line); while a long prefill runs, the keep-alive is an empty `done: false` chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import msgspec
from litestar.response import Stream

from radis_mlx.api.metrics import count_generated_tokens
from radis_mlx.api.sse import Started, keepalive, started
from radis_mlx.errors import InvalidRequestError, ModelNotFoundError
from radis_mlx.generation.runner import generate_until
from radis_mlx.generation.types import GenerationRequest, TextGenerator
from radis_mlx.pool import ModelPool, PoolSlot
from radis_mlx.schemas.ollama.common import pool_ttl

NDJSON = "application/x-ndjson"
# content-type set here too: Litestar lets the handler's JSON media type win over Stream(media_type=).
NDJSON_HEADERS = {"content-type": NDJSON, "cache-control": "no-cache", "x-accel-buffering": "no"}
LATEST = ":latest"
_encoder = msgspec.json.Encoder()

Prepare = Callable[[TextGenerator, GenerationRequest], GenerationRequest]


def resolve(pool: ModelPool, name: str) -> PoolSlot:
    """The slot an Ollama model name means: the id, with or without `:latest`, any case; else 404."""
    if not name:
        raise InvalidRequestError("model is required", param="model")
    bare = name.removesuffix(LATEST)
    for candidate in dict.fromkeys([name, bare, bare + LATEST]):
        try:
            return pool.get(candidate)
        except ModelNotFoundError:
            pass
    lowered = {slot.model_id.lower(): slot for slot in pool.slots()}
    slot = lowered.get(bare.lower()) or lowered.get((bare + LATEST).lower())
    if slot is None:
        raise ModelNotFoundError(name)
    return slot


def line(payload: object) -> bytes:
    """One NDJSON line."""
    return _encoder.encode(payload) + b"\n"


def ndjson_response(events: AsyncIterator[bytes], first: Started, interval: float, beat: object) -> Stream:
    """The streaming response: NDJSON lines, with `beat` (an empty chunk) while the first is computed."""
    return Stream(keepalive(events, first, interval, line(beat)), media_type=NDJSON, headers=NDJSON_HEADERS)


@dataclass
class Timing:
    """A request's clock, in perf_counter nanoseconds: Ollama reports every duration in integer ns."""

    start: int = field(default_factory=perf_counter_ns)
    loaded: int = 0  # the model held (queued and loaded if needed)
    first: int = 0  # the first chunk in: the prompt evaluated

    def seen(self) -> None:
        """A chunk came in (the first one ends the prompt's evaluation)."""
        self.first = self.first or perf_counter_ns()

    def durations(self, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        """The final chunk's counts and durations, by Ollama's field names."""
        now = perf_counter_ns()
        loaded = self.loaded or now
        first = self.first or now
        return {
            "total_duration": now - self.start,
            "load_duration": loaded - self.start,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": first - loaded,
            "eval_count": completion_tokens,
            "eval_duration": now - first,
        }


@dataclass
class Run:
    """A generation started under its model's lease; `close` ends both (and unloads for keep_alive 0)."""

    stack: AsyncExitStack
    chunks: Started
    timing: Timing

    async def close(self) -> None:
        try:
            await self.chunks.aclose()
        finally:
            await self.stack.aclose()


def lease(pool: ModelPool, slot: PoolSlot, keep_alive: float | None) -> AbstractAsyncContextManager[Any]:
    """pool.acquire with keep_alive as the idle TTL; 0 unloads the model once the request is done."""
    return pool.acquire(slot.model_id, ttl=pool_ttl(keep_alive), unload_after=keep_alive == 0)


async def start_run(
    pool: ModelPool,
    slot: PoolSlot,
    keep_alive: float | None,
    generation: GenerationRequest,
    *,
    prepare: Prepare | None = None,
    grace: float | None = None,
) -> Run:
    """Lease the model and start the generation (errors before its first chunk, or `grace`, are raised).

    `prepare` finishes the request once the engine is known (a suffix needs its FIM template).
    """
    timing = Timing()
    stack = AsyncExitStack()
    try:
        engine = await stack.enter_async_context(lease(pool, slot, keep_alive))
        timing.loaded = perf_counter_ns()
        generation = prepare(engine, generation) if prepare is not None else generation
        generate = generate_until(engine, pool.config.server.request_timeout, count_generated_tokens)
        chunks = await started(generate(generation), grace)
    except BaseException:
        await stack.aclose()
        raise
    return Run(stack, chunks, timing)


async def load_or_unload(pool: ModelPool, slot: PoolSlot, keep_alive: float | None) -> str:
    """An empty request: keep_alive 0 unloads the model now ("unload"), anything else loads it ("load")."""
    if keep_alive == 0:
        await pool.unload(slot.model_id)
        return "unload"
    async with lease(pool, slot, keep_alive):
        pass
    return "load"
