"""A request's generations under its model's lease: streamed (open_stream) or collected (run_collected)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, TypeVar

from radis_mlx.api.images import resolve_images
from radis_mlx.api.metrics import count_generated_tokens
from radis_mlx.api.sse import Started, started
from radis_mlx.generation.runner import Generate, Outcome, collect_all, generate_until
from radis_mlx.generation.types import GenerationRequest

if TYPE_CHECKING:
    from radis_mlx.pool import ModelPool

T = TypeVar("T")


async def converted(convert: Callable[[], T], *, compiles: bool) -> T:
    """A body's conversion to generations; in a worker thread when it compiles grammars (tools, a
    JSON schema: up to 128 schemas), so the event loop keeps serving meanwhile."""
    return await asyncio.to_thread(convert) if compiles else convert()


async def open_stream(
    pool: ModelPool, model: str, ttl: float | None, generation: GenerationRequest
) -> tuple[AsyncExitStack, Generate, Started]:
    """Lease the model and start `generation` for a streaming response (see `started`).

    The stack holds the lease: the event writer closes it when the stream ends. `generate` runs
    further generations (more choices) under the same lease and deadline.
    """
    await resolve_images(pool, model, generation)
    stack = AsyncExitStack()
    try:
        engine = await stack.enter_async_context(pool.acquire(model, ttl=ttl))
        generate = generate_until(engine, pool.config.server.request_timeout, count_generated_tokens)
        first = await started(generate(generation), pool.config.server.stream_grace)
    except BaseException:
        await stack.aclose()
        raise
    return stack, generate, first


async def run_collected(
    pool: ModelPool, model: str, ttl: float | None, generations: list[GenerationRequest]
) -> list[Outcome]:
    """Lease the model and run every generation to its end (a non-streaming response)."""
    for generation in {id(g): g for g in generations}.values():  # choices share one request
        await resolve_images(pool, model, generation)
    async with pool.acquire(model, ttl=ttl, generations=len(generations)) as engine:
        generate = generate_until(engine, pool.config.server.request_timeout, count_generated_tokens)
        return await collect_all(generate, generations)
