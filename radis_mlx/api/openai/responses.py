"""POST /v1/responses (+ GET/DELETE by id): decode → earlier turns → pool.acquire → generate → encode.

Stored responses (response_store.py) let `previous_response_id` continue a conversation.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import msgspec
from litestar import HttpMethod, Request, post, route
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from radis_mlx.api.body import decode_body
from radis_mlx.api.errors import stream_failure
from radis_mlx.api.openai.response_events import OutputShape, ResponseEvents, output_items
from radis_mlx.api.openai.response_store import ResponseStore, Stored
from radis_mlx.api.run import converted, open_stream, run_collected
from radis_mlx.api.signing import ReasoningSeal
from radis_mlx.api.sse import SSE_HEADERS, named_event, sse_response
from radis_mlx.errors import ContextLengthExceeded, EngineError, InvalidRequestError, NotFoundError
from radis_mlx.generation.runner import Outcome
from radis_mlx.generation.types import ChatMessage, GenerationChunk
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.common import unix_time
from radis_mlx.schemas.response import (
    DeletedResponse,
    IncompleteDetails,
    OutputItem,
    OutputMessage,
    Response,
    ResponseUsage,
    StreamEvent,
)
from radis_mlx.schemas.response_items import ReasoningItem
from radis_mlx.schemas.responses import ResponseCreateRequest

# Builds the final response from a finished generation (and stores it when asked to).
Finish = Callable[[Outcome, list[OutputItem]], Response]


@post(
    "/v1/responses",
    status_code=200,
    summary="Create a model response",
    tags=["OpenAI"],
    opt={"request": ResponseCreateRequest},
)
async def create_response(
    request: Request,
    pool: NamedDependency[ModelPool],
    responses: NamedDependency[ResponseStore],
    seal: NamedDependency[ReasoningSeal],
) -> Response | Stream:
    body = decode_body(await request.body(), ResponseCreateRequest)
    history = _history(responses, body.previous_response_id)
    defaults = pool.get(body.model).entry.defaults
    compiles = bool(body.tools) or body.text is not None or body.grammar is not None
    generation = await converted(lambda: body.to_generation(history, defaults, seal.open), compiles=compiles)
    shape = OutputShape(
        seal,
        body.includes("reasoning.encrypted_content"),
        generation.logprobs is not None,
        body.custom_tools(),
    )
    draft = Response(
        id=f"resp_{uuid.uuid4().hex}",
        created_at=unix_time(),
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        metadata=body.metadata,
        model=body.model,
        output=[],
        parallel_tool_calls=body.parallel_tool_calls,
        previous_response_id=body.previous_response_id,
        reasoning=body.reasoning,
        status="in_progress",
        store=body.store,
        temperature=generation.sampling.temperature,
        text=body.text,
        tool_choice=body.tool_choice,
        tools=body.tools,
        top_p=generation.sampling.top_p,
        user=body.user,
    )
    conversation = [*history, *body.input_messages(seal.open)]

    def finish(outcome: Outcome, items: list[OutputItem]) -> Response:
        response = _finished(draft, outcome, items)
        if body.store:  # store: false (Codex) keeps nothing
            reply = ChatMessage(
                "assistant", outcome.text or None, outcome.tool_calls or None, None, outcome.reasoning or None
            )
            responses.keep(response, [*conversation, reply])
        return response

    if body.stream:
        try:
            stack, _, first = await open_stream(pool, body.model, body.ttl, generation)
        except ContextLengthExceeded as exc:
            # Codex treats an HTTP 400 as fatal, but compacts on this failed response in the stream.
            return Stream(_failed_stream(draft, exc), media_type="text/event-stream", headers=SSE_HEADERS)
        events = _stream_events(stack, first, draft, finish, shape)
        return sse_response(events, first, pool.config.server.keepalive_interval)
    (outcome,) = await run_collected(pool, body.model, body.ttl, [generation])
    cut = outcome.finish_reason == "length"
    items = output_items(shape, outcome.reasoning, outcome.text, outcome.tool_calls, cut, outcome.logprobs)
    return finish(outcome, items)


# One handler for both methods: Litestar's OPTIONS answer lists only one of two handlers on a path.
@route(
    "/v1/responses/{response_id:str}",
    http_method=[HttpMethod.GET, HttpMethod.DELETE],
    status_code=200,
    summary="Retrieve (GET) or delete (DELETE) a stored model response",
    tags=["OpenAI"],
)
async def response_by_id(
    response_id: FromPath[str], request: Request, responses: NamedDependency[ResponseStore]
) -> Response | DeletedResponse:
    if request.method == HttpMethod.DELETE:
        _stored(responses.pop(response_id), response_id)
        return DeletedResponse(response_id)
    return _stored(responses.get(response_id), response_id).response


def _stored(stored: Stored | None, response_id: str) -> Stored:
    if stored is None:
        raise NotFoundError(f"No response found with id '{response_id}'.", param="response_id")
    return stored


def _history(responses: ResponseStore, previous_id: str | None) -> list[ChatMessage]:
    if previous_id is None:
        return []
    stored = responses.get(previous_id)
    if stored is None:
        raise InvalidRequestError(
            f"Previous response with id '{previous_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return stored.history


def _finished(draft: Response, outcome: Outcome, items: list[OutputItem]) -> Response:
    cut = outcome.finish_reason == "length"
    return msgspec.structs.replace(
        draft,
        output=items,
        status="incomplete" if cut else "completed",
        incomplete_details=IncompleteDetails("max_output_tokens") if cut else None,
        usage=ResponseUsage.of(
            outcome.prompt_tokens,
            outcome.completion_tokens,
            outcome.cached_tokens,
            outcome.reasoning_tokens,
            outcome.image_tokens,
        ),
    )


async def _failed_stream(draft: Response, error: ContextLengthExceeded) -> AsyncIterator[bytes]:
    """created, then failed with the error's code: a request that could not start, told in the stream."""
    sequence = itertools.count()
    failed = msgspec.structs.replace(
        draft, status="failed", error={"code": error.code, "message": error.message}
    )
    for kind, response in (("response.created", draft), ("response.failed", failed)):
        event = StreamEvent(type=kind, sequence_number=next(sequence), response=response)
        yield named_event(kind, event)


async def _stream_events(
    stack: AsyncExitStack,
    stream: AsyncIterator[GenerationChunk],
    draft: Response,
    finish: Finish,
    shape: OutputShape,
) -> AsyncIterator[bytes]:
    """The Responses event sequence: created, in_progress, each output item's events, completed."""
    out = ResponseEvents(shape)
    yield out.emit("response.created", response=draft)
    yield out.emit("response.in_progress", response=draft)
    try:
        async for chunk in stream:
            for event in _chunk_events(out, chunk):
                yield event
            if chunk.finish_reason is not None:
                cut = chunk.finish_reason == "length"
                if not out.items and out.open is None:
                    for event in out.text("", None):  # an empty reply is still one (empty) message
                        yield event
                for event in out.close(cut):
                    yield event
                counts = chunk.prompt_tokens, chunk.completion_tokens
                outcome = Outcome("", chunk.finish_reason, *counts, cached_tokens=chunk.cached_tokens)
                outcome.tool_calls, outcome.reasoning_tokens = out.calls, chunk.reasoning_tokens
                outcome.image_tokens = chunk.image_tokens
                outcome.text = "".join(i.content[0].text for i in out.items if isinstance(i, OutputMessage))
                outcome.reasoning = "".join(
                    i.summary[0].text for i in out.items if isinstance(i, ReasoningItem) and i.summary
                )
                response = finish(outcome, out.items)
                done = "response.completed" if response.status == "completed" else "response.incomplete"
                yield out.emit(done, response=response)
                return
        raise EngineError("the engine ended the generation without a finish reason")
    except Exception as exc:
        error = stream_failure(exc)
        yield out.emit("error", code=error.code or error.type, message=error.message, param=error.param)
        failed = msgspec.structs.replace(
            draft, status="failed", error={"code": error.code or "server_error", "message": error.message}
        )
        yield out.emit("response.failed", response=failed)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await stack.aclose()


def _chunk_events(out: ResponseEvents, chunk: GenerationChunk) -> list[bytes]:
    events = out.reasoning(chunk.reasoning) if chunk.reasoning else []
    if chunk.text or (chunk.logprobs and out.open == "message"):
        events += out.text(chunk.text, chunk.logprobs)
    for delta in chunk.tool_call_deltas or []:
        events += out.call_delta(delta)
    for call in chunk.tool_calls or []:
        events += out.call(call)
    return events
