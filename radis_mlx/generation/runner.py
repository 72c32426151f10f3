"""Driving an engine for one HTTP request: tools, one deadline, n choices, and collected outcomes.

Every API family runs its generations through `generate_until`: the engine's stream with tool calling
around it (tools.with_tools) and the request's deadline on every chunk. Non-streaming routes then
`collect` the chunks; several choices or prompts run at once with `collect_all`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from radis_mlx.errors import EngineError, InvalidRequestError, RequestTimeoutError
from radis_mlx.generation.reasoning_stage import with_reasoning
from radis_mlx.generation.tools import with_tools
from radis_mlx.generation.types import (
    GenerationChunk,
    GenerationRequest,
    TextGenerator,
    TokenLogprob,
    ToolCall,
    request_images,
)

Generate = Callable[[GenerationRequest], AsyncIterator[GenerationChunk]]
# Told of each finished generation: its last chunk (the counts) and when its first chunk came (monotonic).
OnFinish = Callable[[GenerationChunk, float], None]


@dataclass
class Outcome:
    """A finished generation, collected."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    cached_tokens: int = 0  # of prompt_tokens, reused from the prompt cache
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""  # kept apart from `text` (reasoning models)
    reasoning_tokens: int = 0  # of completion_tokens
    image_tokens: int = 0  # of prompt_tokens


def choice_requests(generation: GenerationRequest, n: int) -> list[GenerationRequest]:
    """One generation per choice; a fixed seed is offset so choices differ yet stay reproducible."""
    seed = generation.sampling.seed
    if n == 1 or seed is None:
        return [generation] * n
    return [
        dataclasses.replace(generation, sampling=dataclasses.replace(generation.sampling, seed=seed + i))
        for i in range(n)
    ]


async def collect(stream: AsyncIterator[GenerationChunk]) -> Outcome:
    """Run a generation to its end."""
    pieces: list[str] = []
    thoughts: list[str] = []
    logprobs: list[TokenLogprob] | None = None
    calls: list[ToolCall] = []
    async for chunk in stream:
        pieces.append(chunk.text)
        thoughts.append(chunk.reasoning)
        calls += chunk.tool_calls or []
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.finish_reason is not None:
            text = "".join(pieces)
            counts = chunk.prompt_tokens, chunk.completion_tokens
            outcome = Outcome(text, chunk.finish_reason, *counts, logprobs, chunk.cached_tokens, calls)
            outcome.reasoning, outcome.reasoning_tokens = "".join(thoughts), chunk.reasoning_tokens
            outcome.image_tokens = chunk.image_tokens
            return outcome
    raise EngineError("the engine ended the generation without a finish reason")


async def collect_all(generate: Generate, generations: list[GenerationRequest]) -> list[Outcome]:
    """Run every generation at once (n choices, several prompts: one batch on MLX), in order.

    All of them finish before the first error is raised, so none outlives the request's model lease.
    """
    results = await asyncio.gather(*(collect(generate(g)) for g in generations), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


if sys.version_info >= (3, 11):

    async def _next_before(stream: AsyncIterator[GenerationChunk], deadline: float) -> GenerationChunk:
        # A timer on this task, where wait_for would start a task per chunk (per token, when streaming).
        async with asyncio.timeout_at(deadline):
            return await anext(stream)

else:

    async def _next_before(stream: AsyncIterator[GenerationChunk], deadline: float) -> GenerationChunk:
        remaining = deadline - asyncio.get_running_loop().time()
        return await asyncio.wait_for(anext(stream), max(remaining, 0))


def check_images(engine: TextGenerator, request: GenerationRequest) -> None:
    """A request's images reach only an engine that reads them, and only decoded (api/images.py)."""
    images = request_images(request)
    if images and "image" not in getattr(engine, "input_modalities", ("text",)):
        raise InvalidRequestError(
            "this model does not accept images", param=images[0].param, code="image_input_unsupported"
        )
    unresolved = next((image for image in images if not image.resolved), None)
    if unresolved is not None:
        raise EngineError(f"an image reached the engine undecoded ({unresolved.param})")


def generate_until(engine: TextGenerator, timeout: float, on_finish: OnFinish | None = None) -> Generate:
    """engine.generate with tool calling, bounded by one deadline for the whole HTTP request.

    `on_finish` gets each finished generation's last chunk and its first chunk's time (the server's
    counters and request log).
    """
    deadline = asyncio.get_running_loop().time() + timeout
    fmt = engine.reasoning
    # The engine's text, its reasoning kept apart (the model's format, budgets), then tool calls parsed
    # from the answer only.
    reasoned = with_reasoning(engine.generate, fmt, engine.chat_template)
    harmony = fmt is not None and fmt.harmony

    async def bounded(request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        check_images(engine, request)
        stream = with_tools(reasoned, engine.chat_template, request, calls_parsed=harmony)
        first = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Also when chunks are ready: a slow writer keeps no stream past the deadline.
                if loop.time() >= deadline:
                    raise RequestTimeoutError(f"the request took longer than {timeout:g} s")
                try:
                    chunk = await _next_before(stream, deadline)
                except StopAsyncIteration:
                    return
                except asyncio.TimeoutError:
                    raise RequestTimeoutError(f"the request took longer than {timeout:g} s") from None
                first = first or time.monotonic()
                if chunk.finish_reason is not None and on_finish is not None:
                    on_finish(chunk, first)
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return bounded
