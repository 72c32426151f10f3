"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API on the same models.

Errors on these routes take Anthropic's shape (api/errors.py picks it by the route).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Stream

from radis_mlx.api.body import decode_body
from radis_mlx.api.errors import ANTHROPIC_PREFIX, error_body, stream_failure
from radis_mlx.api.run import converted, open_stream, run_collected
from radis_mlx.api.sse import named_event, sse_response
from radis_mlx.errors import EngineError
from radis_mlx.generation.types import GenerationChunk, ToolCall
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.errors import AnthropicErrorResponse
from radis_mlx.schemas.messages import (
    STOP_REASONS,
    Delta,
    DeltaUsage,
    Message,
    MessageCountTokensRequest,
    MessageCreateRequest,
    MessageTokensCount,
    StreamEvent,
    TextBlock,
    ToolUseBlock,
    Usage,
)

MESSAGES_PATH = ANTHROPIC_PREFIX


@post(
    MESSAGES_PATH,
    status_code=200,
    summary="Create a message (Anthropic Messages API)",
    tags=["Anthropic"],
    opt={"request": MessageCreateRequest, "error": AnthropicErrorResponse},
)
async def create_message(request: Request, pool: NamedDependency[ModelPool]) -> Message | Stream:
    body = decode_body(await request.body(), MessageCreateRequest)
    defaults = pool.get(body.model).entry.defaults
    compiles = bool(body.tools) or body.output_config is not None
    generation = await converted(lambda: body.to_generation(defaults), compiles=compiles)
    if body.stream:
        stack, _, first = await open_stream(pool, body.model, body.ttl, generation)
        events = _stream_events(stack, first, body.model)
        return sse_response(events, first, pool.config.server.keepalive_interval)
    (outcome,) = await run_collected(pool, body.model, body.ttl, [generation])
    return Message(
        id=_message_id(),
        content=_content(outcome.text, outcome.tool_calls),
        model=body.model,
        stop_reason=STOP_REASONS.get(outcome.finish_reason, "end_turn"),
        usage=Usage(
            outcome.prompt_tokens, outcome.completion_tokens, cache_read_input_tokens=outcome.cached_tokens
        ),
    )


@post(
    f"{MESSAGES_PATH}/count_tokens",
    status_code=200,
    summary="Count the tokens of a message request (Anthropic Messages API)",
    tags=["Anthropic"],
    opt={"request": MessageCountTokensRequest, "error": AnthropicErrorResponse},
    operation_id="V1MessagesCountTokensCountTokens",  # as before the handler was renamed
)
async def count_message_tokens(request: Request, pool: NamedDependency[ModelPool]) -> MessageTokensCount:
    body = decode_body(await request.body(), MessageCountTokensRequest)
    pool.get(body.model)
    # Engines expose no tokenizer call; a one-token generation reports the templated prompt's length.
    generation = await converted(lambda: body.generation(max_tokens=1), compiles=bool(body.tools))
    (outcome,) = await run_collected(pool, body.model, None, [generation])
    return MessageTokensCount(outcome.prompt_tokens)


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def _event(event: StreamEvent) -> bytes:
    return named_event(event.type, event)


def _content(text: str, calls: list[ToolCall]) -> list[TextBlock | ToolUseBlock]:
    """A text block (also when there is nothing else), then one tool_use block per call."""
    blocks: list[TextBlock | ToolUseBlock] = [TextBlock(text)] if text or not calls else []
    return blocks + [_tool_use(call) for call in calls]


def _tool_use(call: ToolCall) -> ToolUseBlock:
    return ToolUseBlock(call.id, call.name, msgspec.json.decode(call.arguments))


class _Blocks:
    """Content blocks as Messages events: text blocks open on the first text, tool_use blocks whole."""

    def __init__(self) -> None:
        self.count = 0
        self.text_open = False

    @property
    def empty(self) -> bool:
        """No block opened yet."""
        return self.count == 0 and not self.text_open

    def text(self, text: str) -> list[bytes]:
        events = []
        if not self.text_open:
            events.append(
                _event(StreamEvent("content_block_start", index=self.count, content_block=TextBlock("")))
            )
            self.text_open = True
        delta = Delta("text_delta", text)
        return [*events, _event(StreamEvent("content_block_delta", index=self.count, delta=delta))]

    def close_text(self) -> list[bytes]:
        if not self.text_open:
            return []
        self.text_open = False
        self.count += 1
        return [_event(StreamEvent("content_block_stop", index=self.count - 1))]

    def tool_use(self, call: ToolCall) -> list[bytes]:
        events, index = self.close_text(), self.count
        block = msgspec.structs.replace(_tool_use(call), input={})
        self.count += 1
        return [
            *events,
            _event(StreamEvent("content_block_start", index=index, content_block=block)),
            _event(
                StreamEvent(
                    "content_block_delta",
                    index=index,
                    delta=Delta("input_json_delta", partial_json=call.arguments),
                )
            ),
            _event(StreamEvent("content_block_stop", index=index)),
        ]


async def _stream_events(
    stack: AsyncExitStack, stream: AsyncIterator[GenerationChunk], model: str
) -> AsyncIterator[bytes]:
    """message_start, ping, the content blocks' events, message_delta, message_stop."""
    start = Message(id=_message_id(), content=[], model=model, usage=Usage(0, 0))
    yield _event(StreamEvent("message_start", message=start))
    yield _event(StreamEvent("ping"))
    blocks = _Blocks()
    try:
        async for chunk in stream:
            for event in blocks.text(chunk.text) if chunk.text else []:
                yield event
            for call in chunk.tool_calls or []:
                for event in blocks.tool_use(call):
                    yield event
            if chunk.finish_reason is not None:
                # An empty reply is still one (empty) text block, as in the non-streamed message.
                for event in [*(blocks.text("") if blocks.empty else []), *blocks.close_text()]:
                    yield event
                reason = STOP_REASONS.get(chunk.finish_reason, "end_turn")
                usage = DeltaUsage(chunk.completion_tokens, chunk.prompt_tokens)
                end = Delta(stop_reason=reason, stop_sequence=None)
                yield _event(StreamEvent("message_delta", delta=end, usage=usage))
                yield _event(StreamEvent("message_stop"))
                return
        raise EngineError("the engine ended the generation without a finish reason")
    except Exception as exc:
        error = error_body(stream_failure(exc), "anthropic")
        assert isinstance(error, AnthropicErrorResponse)
        yield _event(StreamEvent("error", error=error.error))
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await stack.aclose()
