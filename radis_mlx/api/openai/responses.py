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
from radis_mlx.api.openai.response_store import ResponseStore, Stored
from radis_mlx.api.run import converted, open_stream, run_collected
from radis_mlx.api.sse import named_event, sse_response
from radis_mlx.errors import EngineError, InvalidRequestError, NotFoundError
from radis_mlx.generation.runner import Outcome
from radis_mlx.generation.types import ChatMessage, GenerationChunk, ToolCall
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
from radis_mlx.schemas.responses import FunctionCall, OutputText, ResponseCreateRequest

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
    request: Request, pool: NamedDependency[ModelPool], responses: NamedDependency[ResponseStore]
) -> Response | Stream:
    body = decode_body(await request.body(), ResponseCreateRequest)
    history = _history(responses, body.previous_response_id)
    defaults = pool.get(body.model).entry.defaults
    compiles = bool(body.tools) or body.text is not None
    generation = await converted(lambda: body.to_generation(history, defaults), compiles=compiles)
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
        status="in_progress",
        store=body.store,
        temperature=generation.sampling.temperature,
        text=body.text,
        top_p=generation.sampling.top_p,
        user=body.user,
    )
    conversation = [*history, *body.input_messages()]

    def finish(outcome: Outcome, items: list[OutputItem]) -> Response:
        response = _finished(draft, outcome, items)
        if body.store:
            reply = ChatMessage("assistant", outcome.text or None, outcome.tool_calls or None)
            responses.keep(response, [*conversation, reply])
        return response

    if body.stream:
        stack, _, first = await open_stream(pool, body.model, body.ttl, generation)
        events = _stream_events(stack, first, draft, finish)
        return sse_response(events, first, pool.config.server.keepalive_interval)
    (outcome,) = await run_collected(pool, body.model, body.ttl, [generation])
    return finish(outcome, _output_items(outcome.text, outcome.tool_calls, outcome.finish_reason == "length"))


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


def _output_items(text: str, calls: list[ToolCall], cut: bool) -> list[OutputItem]:
    """A message with the text (also when there is nothing else), then one item per function call."""
    items: list[OutputItem] = []
    if text or not calls:
        message = [OutputText(text)]
        items.append(OutputMessage(_item_id("msg"), message, status="incomplete" if cut else "completed"))
    return items + [_function_call(call) for call in calls]


def _function_call(call: ToolCall) -> FunctionCall:
    return FunctionCall(call.id, call.name, call.arguments, id=_item_id("fc"))


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _finished(draft: Response, outcome: Outcome, items: list[OutputItem]) -> Response:
    cut = outcome.finish_reason == "length"
    return msgspec.structs.replace(
        draft,
        output=items,
        status="incomplete" if cut else "completed",
        incomplete_details=IncompleteDetails("max_output_tokens") if cut else None,
        usage=ResponseUsage.of(outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens),
    )


def _event(kind: str, sequence: int, **fields: object) -> bytes:
    return named_event(kind, StreamEvent(type=kind, sequence_number=sequence, **fields))  # type: ignore[arg-type]


class _Events:
    """Output items as Responses events: a message's text parts, function calls whole."""

    def __init__(self) -> None:
        self.sequence = itertools.count()
        self.items: list[OutputItem] = []
        self.message: OutputMessage | None = None  # open, taking text deltas
        self.text: list[str] = []
        self.calls: list[ToolCall] = []

    def emit(self, kind: str, **fields: object) -> bytes:
        return _event(kind, next(self.sequence), **fields)

    def _where(self) -> dict[str, object]:
        assert self.message is not None
        return {
            "item_id": self.message.id,
            "output_index": self.items.index(self.message),
            "content_index": 0,
        }

    def text_delta(self, text: str) -> list[bytes]:
        events = []
        if self.message is None:
            self.message = OutputMessage(_item_id("msg"), [], status="in_progress")
            self.items.append(self.message)
            added = self.emit(
                "response.output_item.added", output_index=len(self.items) - 1, item=self.message
            )
            events += [added, self.emit("response.content_part.added", part=OutputText(""), **self._where())]
        self.text.append(text)
        return [*events, self.emit("response.output_text.delta", delta=text, logprobs=[], **self._where())]

    def close_message(self, cut: bool) -> list[bytes]:
        if self.message is None:
            return []
        where, text = self._where(), "".join(self.text)
        done = OutputMessage(self.message.id, [OutputText(text)], status="incomplete" if cut else "completed")
        self.items[self.items.index(self.message)] = done
        self.message = None
        return [
            self.emit("response.output_text.done", text=text, logprobs=[], **where),
            self.emit("response.content_part.done", part=done.content[0], **where),
            self.emit("response.output_item.done", output_index=where["output_index"], item=done),
        ]

    def function_call(self, call: ToolCall) -> list[bytes]:
        events = self.close_message(cut=False)
        item, index = _function_call(call), len(self.items)
        self.items.append(item)
        self.calls.append(call)
        where = {"item_id": item.id, "output_index": index}
        started = msgspec.structs.replace(item, arguments="", status="in_progress")
        return [
            *events,
            self.emit("response.output_item.added", output_index=index, item=started),
            self.emit("response.function_call_arguments.delta", delta=call.arguments, **where),
            self.emit(
                "response.function_call_arguments.done", arguments=call.arguments, name=call.name, **where
            ),
            self.emit("response.output_item.done", output_index=index, item=item),
        ]


async def _stream_events(
    stack: AsyncExitStack, stream: AsyncIterator[GenerationChunk], draft: Response, finish: Finish
) -> AsyncIterator[bytes]:
    """The Responses event sequence: created, in_progress, each output item's events, completed."""
    out = _Events()
    yield out.emit("response.created", response=draft)
    yield out.emit("response.in_progress", response=draft)
    try:
        async for chunk in stream:
            for event in out.text_delta(chunk.text) if chunk.text else []:
                yield event
            for call in chunk.tool_calls or []:
                for event in out.function_call(call):
                    yield event
            if chunk.finish_reason is not None:
                cut = chunk.finish_reason == "length"
                if not out.items:
                    for event in out.text_delta(""):  # an empty reply is still one (empty) message
                        yield event
                for event in out.close_message(cut):
                    yield event
                counts = chunk.prompt_tokens, chunk.completion_tokens
                outcome = Outcome(
                    "".join(out.text), chunk.finish_reason, *counts, cached_tokens=chunk.cached_tokens
                )
                outcome.tool_calls = out.calls
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
