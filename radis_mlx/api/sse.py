"""Server-sent events: framing, the first chunk pulled before the response starts, keep-alive comments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar.response import Stream

from radis_mlx.errors import EngineError
from radis_mlx.generation.types import GenerationChunk

# content-type set here too: Litestar lets the handler's JSON media type win over Stream(media_type=).
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients skip it, proxies and timeouts see bytes
_encoder = msgspec.json.Encoder()


def sse(payload: object) -> bytes:
    """One server-sent event carrying a JSON payload."""
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def named_event(name: str, payload: object) -> bytes:
    """One server-sent event with an event name (the Responses and Anthropic streams)."""
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(payload) + b"\n\n"


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


async def keepalive(
    events: AsyncIterator[bytes], first: Started, interval: float, beat: bytes = SSE_KEEPALIVE
) -> AsyncIterator[bytes]:
    """Stream bytes as they come; until the first chunk is in, only `beat` every `interval`.

    SSE's beat is a `: keep-alive` comment; NDJSON's (Ollama) is an empty chunk, since its clients
    parse every line as JSON.
    """
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
            yield beat
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


def sse_response(events: AsyncIterator[bytes], first: Started, interval: float) -> Stream:
    """The streaming response: SSE events, kept alive while the first token is being computed."""
    return Stream(keepalive(events, first, interval), media_type="text/event-stream", headers=SSE_HEADERS)
