"""What every API family shares: strict body decoding, SSE framing, running engine streams."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import msgspec
from litestar.response import Stream

from radis_mlx.api.metrics import count_tokens
from radis_mlx.engines.base import Engine, GenerationChunk, GenerationRequest, TokenLogprob, ToolCall
from radis_mlx.engines.tools import with_tools
from radis_mlx.errors import EngineError, InvalidRequestError, RadisError, RequestTimeoutError

if TYPE_CHECKING:
    from radis_mlx.pool import ModelPool

T = TypeVar("T")
log = logging.getLogger(__name__)

# content-type set here too: Litestar lets the handler's JSON media type win over Stream(media_type=).
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients skip it, proxies and timeouts see bytes
_PATH = re.compile(r" - at `\$\.?(.*)`$")
_encoder = msgspec.json.Encoder()


def decode_body(body: bytes, model: type[T]) -> T:
    """Decode a JSON body strictly; errors carry msgspec's path as the OpenAI `param`."""
    try:
        return msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        match = _PATH.search(str(exc))
        raise InvalidRequestError(str(exc), param=match.group(1) if match else None) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"We could not parse the JSON body of your request: {exc}") from None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def sse(payload: object) -> bytes:
    """One server-sent event carrying a JSON payload."""
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def sse_error(exc: BaseException) -> bytes:
    """The error event a stream ends with when generation fails after the response started."""
    if not isinstance(exc, RadisError):
        log.exception("generation failed mid-stream", exc_info=exc)
        exc = EngineError(f"generation failed: {type(exc).__name__}: {exc}")
    return sse(exc.to_body())


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


async def collect(stream: AsyncIterator[GenerationChunk]) -> Outcome:
    """Run a generation to its end."""
    pieces: list[str] = []
    logprobs: list[TokenLogprob] | None = None
    calls: list[ToolCall] = []
    async for chunk in stream:
        pieces.append(chunk.text)
        calls += chunk.tool_calls or []
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.finish_reason is not None:
            text = "".join(pieces)
            counts = chunk.prompt_tokens, chunk.completion_tokens
            return Outcome(text, chunk.finish_reason, *counts, logprobs, chunk.cached_tokens, calls)
    raise EngineError("the engine ended the generation without a finish reason")


Generate = Callable[[GenerationRequest], AsyncIterator[GenerationChunk]]


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


def generate_until(engine: Engine, timeout: float) -> Generate:
    """engine.generate, bounded by one deadline for the whole HTTP request."""
    deadline = asyncio.get_running_loop().time() + timeout

    async def bounded(request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        stream = with_tools(engine, request)  # engine.generate, plus tool calling when tools are offered
        try:
            while True:
                try:
                    chunk = await _next_before(stream, deadline)
                except StopAsyncIteration:
                    return
                except asyncio.TimeoutError:
                    raise RequestTimeoutError(f"the request took longer than {timeout:g} s") from None
                if chunk.finish_reason is not None:
                    count_tokens(chunk.completion_tokens)
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return bounded


async def started(stream: AsyncIterator[GenerationChunk], grace: float | None = None) -> Started:
    """Pull the first chunk now, so request errors surface before a streaming response starts.

    After `grace` seconds without it (a long prefill) the response may start anyway: the first chunk
    keeps coming in the background, and an error after that is an SSE error event.
    """
    pending = asyncio.ensure_future(_first(stream))
    try:
        await asyncio.wait({pending}, timeout=grace)
    except BaseException:  # the client gave up before the response started
        pending.cancel()
        raise
    if pending.done():
        pending.result()  # a request error: still a real HTTP error
    return Started(stream, pending)


async def _first(stream: AsyncIterator[GenerationChunk]) -> GenerationChunk:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        raise EngineError("the engine produced no output") from None


class Started:
    """A generation whose first chunk is in or on its way; iterates like the stream it wraps."""

    def __init__(
        self, stream: AsyncIterator[GenerationChunk], first: asyncio.Future[GenerationChunk]
    ) -> None:
        self.first = first
        self._stream = stream
        self._replayed = False

    def __aiter__(self) -> Started:
        return self

    async def __anext__(self) -> GenerationChunk:
        if not self._replayed:
            self._replayed = True
            return await self.first
        return await anext(self._stream)

    async def aclose(self) -> None:
        """Stop the generation, also while its first chunk is still being computed."""
        if not self.first.done():
            self.first.cancel()
            await asyncio.wait({self.first})
        elif not self.first.cancelled():
            self.first.exception()  # seen here or by the stream; never "never retrieved"
        await self._stream.aclose()  # type: ignore[attr-defined]


async def keepalive(events: AsyncIterator[bytes], first: Started, interval: float) -> AsyncIterator[bytes]:
    """SSE bytes as they come; until the first chunk is in, only a `: keep-alive` comment every `interval`."""
    if first.first.done():
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return
    # Started now, so the events' own cleanup (stop the generation, release the model) runs however we end.
    pending = asyncio.ensure_future(anext(events))
    try:
        while not first.first.done():
            yield SSE_KEEPALIVE
            await asyncio.wait({first.first}, timeout=interval)
        try:
            yield await pending  # held back until now: no event before the first token, as without the wait
        except StopAsyncIteration:
            return
        async for event in events:
            yield event
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.wait({pending})
        await events.aclose()  # type: ignore[attr-defined]


async def open_stream(
    pool: ModelPool, model: str, ttl: float | None, generation: GenerationRequest
) -> tuple[AsyncExitStack, Generate, Started]:
    """Lease the model and start `generation` for a streaming response (see `started`).

    The stack holds the lease: the event writer closes it when the stream ends. `generate` runs
    further generations (more choices) under the same lease and deadline.
    """
    stack = AsyncExitStack()
    try:
        engine = await stack.enter_async_context(pool.acquire(model, ttl=ttl))
        generate = generate_until(engine, pool.config.server.request_timeout)
        first = await started(generate(generation), pool.config.server.stream_grace)
    except BaseException:
        await stack.aclose()
        raise
    return stack, generate, first


def sse_response(events: AsyncIterator[bytes], first: Started, interval: float) -> Stream:
    """The streaming response: SSE events, kept alive while the first token is being computed."""
    return Stream(keepalive(events, first, interval), media_type="text/event-stream", headers=SSE_HEADERS)
