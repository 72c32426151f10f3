"""What every API family shares: strict body decoding, SSE framing, running engine streams."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from radis_mlx.engines.base import Engine, GenerationChunk, GenerationRequest, TokenLogprob
from radis_mlx.errors import EngineError, InvalidRequestError, RadisError, RequestTimeoutError

T = TypeVar("T")
log = logging.getLogger(__name__)

# content-type set here too: Litestar lets the handler's JSON media type win over Stream(media_type=).
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_DONE = b"data: [DONE]\n\n"
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


async def collect(stream: AsyncIterator[GenerationChunk]) -> Outcome:
    """Run a generation to its end."""
    pieces: list[str] = []
    logprobs: list[TokenLogprob] | None = None
    async for chunk in stream:
        pieces.append(chunk.text)
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.finish_reason is not None:
            text = "".join(pieces)
            return Outcome(text, chunk.finish_reason, chunk.prompt_tokens, chunk.completion_tokens, logprobs)
    raise EngineError("the engine ended the generation without a finish reason")


Generate = Callable[[GenerationRequest], AsyncIterator[GenerationChunk]]


def generate_until(engine: Engine, timeout: float) -> Generate:
    """engine.generate, bounded by one deadline for the whole HTTP request."""
    deadline = asyncio.get_running_loop().time() + timeout

    async def bounded(request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        stream = engine.generate(request)
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    chunk = await asyncio.wait_for(anext(stream), max(remaining, 0))
                except StopAsyncIteration:
                    return
                except asyncio.TimeoutError:
                    raise RequestTimeoutError(f"the request took longer than {timeout:g} s") from None
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return bounded


async def started(stream: AsyncIterator[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
    """Pull the first chunk now, so request errors surface before a streaming response starts."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise EngineError("the engine produced no output") from None

    async def replay() -> AsyncIterator[GenerationChunk]:
        try:
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return replay()
