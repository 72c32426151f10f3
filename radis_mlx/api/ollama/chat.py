"""POST /api/chat and /api/generate (Ollama): decode → schemas → generation runner → pool; NDJSON or JSON.

`stream` absent streams. An empty `messages`/`prompt` loads the model (`done_reason: "load"`), or
unloads it with `keep_alive: 0` (`"unload"`). Errors take Ollama's shape (api/errors.py, by route).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol, TypeVar

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Stream

from radis_mlx.api.body import decode_body
from radis_mlx.api.errors import ndjson_error
from radis_mlx.api.ollama.run import Prepare, Run, line, load_or_unload, ndjson_response, resolve, start_run
from radis_mlx.api.run import converted
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.fim import fill_in_middle
from radis_mlx.generation.runner import Outcome, collect
from radis_mlx.generation.types import (
    GenerationChunk,
    GenerationRequest,
    TextGenerator,
    TokenLogprob,
    ToolCall,
)
from radis_mlx.pool import ModelPool, PoolSlot
from radis_mlx.schemas.errors import OllamaErrorResponse
from radis_mlx.schemas.ollama.chat import (
    ChatRequest,
    ChatResponse,
    GenerateRequest,
    GenerateResponse,
    Logprob,
    ResponseMessage,
    ResponseToolCall,
    done_reason,
)
from radis_mlx.schemas.ollama.common import created_at

TAGS = ["Ollama"]
Reply = TypeVar("Reply", bound=msgspec.Struct, covariant=True)


@post(
    "/api/chat",
    status_code=200,
    summary="Chat with a model (Ollama; NDJSON unless stream is false)",
    tags=TAGS,
    opt={"request": ChatRequest, "ndjson": ChatResponse, "error": OllamaErrorResponse},
)
async def ollama_chat(request: Request, pool: NamedDependency[ModelPool]) -> ChatResponse | Stream:
    body = decode_body(await request.body(), ChatRequest)
    slot = _generating(pool, body.model, "chat")
    keep_alive = body.keep_alive_seconds()
    if not body.messages:
        reason = await load_or_unload(pool, slot, keep_alive)
        return _ChatChunks(body.model).done(reason, {})
    compiles = bool(body.tools) or body.format is not None  # tool and format schemas compile grammars
    generation = await converted(lambda: body.to_generation(slot.entry.defaults), compiles=compiles)
    prepare = _checked(body.model, body.thinks)
    return await _respond(pool, slot, keep_alive, generation, body.stream, _ChatChunks(body.model), prepare)


@post(
    "/api/generate",
    status_code=200,
    summary="Generate a completion (Ollama; NDJSON unless stream is false)",
    tags=TAGS,
    opt={"request": GenerateRequest, "ndjson": GenerateResponse, "error": OllamaErrorResponse},
)
async def ollama_generate(request: Request, pool: NamedDependency[ModelPool]) -> GenerateResponse | Stream:
    body = decode_body(await request.body(), GenerateRequest)
    slot = _generating(pool, body.model, "generate")
    keep_alive = body.keep_alive_seconds()
    if not body.prompt and not body.suffix:
        reason = await load_or_unload(pool, slot, keep_alive)
        return _GenerateChunks(body.model).done(reason, {})
    compiles = body.format is not None
    generation = await converted(lambda: body.to_generation(slot.entry.defaults), compiles=compiles)
    prepare = _checked(body.model, body.thinks, body.suffix)
    return await _respond(
        pool, slot, keep_alive, generation, body.stream, _GenerateChunks(body.model), prepare
    )


def _checked(name: str, thinks: bool, suffix: str | None = None) -> Prepare:
    """What only the loaded model can tell: whether it reasons, and its fill-in-the-middle template."""

    def prepare(engine: TextGenerator, request: GenerationRequest) -> GenerationRequest:
        if thinks and engine.reasoning is None:
            raise InvalidRequestError(f'"{name}" does not support thinking', param="think")
        if suffix:
            return replace(request, prompt=fill_in_middle(engine.fim_template, request.prompt, suffix))
        return request

    return prepare


def _generating(pool: ModelPool, name: str, route: str) -> PoolSlot:
    slot = resolve(pool, name)
    if slot.entry.kind == "embedding":  # refused before loading it, as Ollama checks capabilities
        raise InvalidRequestError(f'"{name}" does not support {route}', param="model")
    return slot


class _Chunks(Protocol[Reply]):
    """One route's reply objects: pieces while generating, then the last one with the counts."""

    def delta(self, piece: GenerationChunk) -> Reply: ...

    def done(self, reason: str, durations: dict[str, int], outcome: Outcome | None = None) -> Reply: ...


async def _respond(
    pool: ModelPool,
    slot: PoolSlot,
    keep_alive: float | None,
    generation: GenerationRequest,
    stream: bool,
    chunks: _Chunks[Reply],
    prepare: Prepare | None = None,
) -> Reply | Stream:
    server = pool.config.server
    if stream:
        run = await start_run(pool, slot, keep_alive, generation, prepare=prepare, grace=server.stream_grace)
        beat = chunks.delta(GenerationChunk(""))  # an empty chunk: never a blank line
        return ndjson_response(_events(run, chunks), run.chunks, server.keepalive_interval, beat)
    run = await start_run(pool, slot, keep_alive, generation, prepare=prepare)
    pieces = _timed(run)
    try:
        outcome: Outcome = await collect(pieces)
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
        await run.close()
    durations = run.timing.durations(outcome.prompt_tokens, outcome.completion_tokens)
    return chunks.done(done_reason(outcome.finish_reason), durations, outcome)


async def _timed(run: Run) -> AsyncIterator[GenerationChunk]:
    async for piece in run.chunks:
        run.timing.seen()
        yield piece


async def _events(run: Run, chunks: _Chunks[msgspec.Struct]) -> AsyncIterator[bytes]:
    try:
        async for piece in run.chunks:
            run.timing.seen()
            if piece.text or piece.reasoning or piece.tool_calls or piece.logprobs:
                yield line(chunks.delta(piece))
            if piece.finish_reason is not None:
                durations = run.timing.durations(piece.prompt_tokens, piece.completion_tokens)
                yield line(chunks.done(done_reason(piece.finish_reason), durations))
    except Exception as exc:
        yield ndjson_error(exc)
    finally:
        await run.close()


def _logprobs(items: list[TokenLogprob] | None) -> list[Logprob] | None:
    return Logprob.of(items) if items else None


class _ChatChunks:
    """/api/chat's objects: `message` on every one; tool calls numbered across the reply."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.calls = 0

    def _message(self, text: str, thinking: str, calls: list[ToolCall]) -> ResponseMessage:
        numbered = [ResponseToolCall.of(call, self.calls + i) for i, call in enumerate(calls)]
        self.calls += len(calls)
        return ResponseMessage("assistant", text, thinking=thinking or None, tool_calls=numbered or None)

    def delta(self, piece: GenerationChunk) -> ChatResponse:
        return ChatResponse(
            model=self.model,
            created_at=created_at(),
            message=self._message(piece.text, piece.reasoning, piece.tool_calls or []),
            done=False,
            logprobs=_logprobs(piece.logprobs),
        )

    def done(self, reason: str, durations: dict[str, int], outcome: Outcome | None = None) -> ChatResponse:
        text, thinking, calls = (
            (outcome.text, outcome.reasoning, outcome.tool_calls) if outcome else ("", "", [])
        )
        reply = ChatResponse(
            model=self.model,
            created_at=created_at(),
            message=self._message(text, thinking, calls),
            done=True,
            done_reason=reason,
            logprobs=_logprobs(outcome.logprobs if outcome else None),
        )
        return msgspec.structs.replace(reply, **durations)


class _GenerateChunks:
    """/api/generate's objects: the text in `response`, the reasoning in `thinking`."""

    def __init__(self, model: str) -> None:
        self.model = model

    def delta(self, piece: GenerationChunk) -> GenerateResponse:
        return GenerateResponse(
            model=self.model,
            created_at=created_at(),
            response=piece.text,
            thinking=piece.reasoning or None,
            done=False,
            logprobs=_logprobs(piece.logprobs),
        )

    def done(
        self, reason: str, durations: dict[str, int], outcome: Outcome | None = None
    ) -> GenerateResponse:
        reply = GenerateResponse(
            model=self.model,
            created_at=created_at(),
            response=outcome.text if outcome else "",
            thinking=(outcome.reasoning or None) if outcome else None,
            done=True,
            done_reason=reason,
            logprobs=_logprobs(outcome.logprobs if outcome else None),
        )
        return msgspec.structs.replace(reply, **durations)
