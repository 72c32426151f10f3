"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API on the same models.

Errors on these routes take Anthropic's shape (api/errors.py picks it by the route). Reasoning comes out as
thinking blocks whose signature seals the text (api/signing.py): a block sent back verifies, or is a 400.
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
from radis_mlx.api.signing import ReasoningSeal
from radis_mlx.api.sse import named_event, sse_response
from radis_mlx.errors import EngineError, InvalidRequestError
from radis_mlx.generation.types import GenerationChunk, ToolCall
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.errors import AnthropicErrorResponse
from radis_mlx.schemas.message import (
    STOP_REASONS,
    AssistantBlock,
    Delta,
    DeltaUsage,
    Message,
    MessageTokensCount,
    StreamEvent,
    Usage,
)
from radis_mlx.schemas.messages import (
    MessageCountTokensRequest,
    MessageCreateRequest,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

MESSAGES_PATH = ANTHROPIC_PREFIX


@post(
    MESSAGES_PATH,
    status_code=200,
    summary="Create a message (Anthropic Messages API)",
    tags=["Anthropic"],
    opt={"request": MessageCreateRequest, "error": AnthropicErrorResponse},
)
async def create_message(
    request: Request, pool: NamedDependency[ModelPool], seal: NamedDependency[ReasoningSeal]
) -> Message | Stream:
    body = decode_body(await request.body(), MessageCreateRequest)
    _open_thinking(body, seal)
    defaults = pool.get(body.model).entry.defaults
    compiles = bool(body.tools) or body.output_config is not None or body.grammar is not None
    generation = await converted(lambda: body.to_generation(defaults), compiles=compiles)
    omitted = body.thinking is not None and body.thinking.display == "omitted"
    if body.stream:
        stack, _, first = await open_stream(pool, body.model, body.ttl, generation)
        events = _stream_events(stack, first, body.model, _Usage(pool, body.model), seal, omitted)
        return sse_response(events, first, pool.config.server.keepalive_interval)
    (outcome,) = await run_collected(pool, body.model, body.ttl, [generation])
    thinking = [ThinkingBlock("" if omitted else outcome.reasoning, seal.seal(outcome.reasoning))]
    return Message(
        id=_message_id(),
        content=[*(thinking if outcome.reasoning else []), *_content(outcome.text, outcome.tool_calls)],
        model=body.model,
        stop_reason=STOP_REASONS.get(outcome.finish_reason, "end_turn"),
        usage=_Usage(pool, body.model).of(
            outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens
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
async def count_message_tokens(
    request: Request, pool: NamedDependency[ModelPool], seal: NamedDependency[ReasoningSeal]
) -> MessageTokensCount:
    body = decode_body(await request.body(), MessageCountTokensRequest)
    _open_thinking(body, seal)
    pool.get(body.model)
    # Engines expose no tokenizer call; a one-token generation reports the templated prompt's length.
    generation = await converted(lambda: body.generation(max_tokens=1), compiles=bool(body.tools))
    (outcome,) = await run_collected(pool, body.model, None, [generation])
    return MessageTokensCount(_Usage(pool, body.model).scaled(outcome.prompt_tokens))


def _open_thinking(body: MessageCountTokensRequest, seal: ReasoningSeal) -> None:
    """Thinking blocks sent back must carry our signature; their text is what the signature holds."""
    for param, block in body.thinking_blocks():
        text = seal.open(block.signature)
        if text is None or block.thinking not in ("", text):
            raise InvalidRequestError("Invalid `signature` in `thinking` block", param=f"{param}.signature")
        block.thinking = text  # also when it was omitted from the stream


class _Usage:
    """Usage in Anthropic's meaning, scaled when [server] anthropic_usage_window asks (for Claude Code,
    which assumes a 200k window: scaled figures let it compact when the model's real window fills)."""

    def __init__(self, pool: ModelPool, model: str) -> None:
        slot = pool.get(model)
        window = slot.entry.anthropic_usage_window or pool.config.server.anthropic_usage_window
        engine = slot.engine
        context = engine.info.context_length if engine is not None else 0
        self.scale = window / context if window and context else 1.0

    def of(self, prompt_tokens: int, output_tokens: int, cached_tokens: int) -> Usage:
        return Usage.of(prompt_tokens, output_tokens, cached_tokens, self.scale)

    def scaled(self, tokens: int) -> int:
        return round(tokens * self.scale)


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def _event(event: StreamEvent) -> bytes:
    return named_event(event.type, event)


def _content(text: str, calls: list[ToolCall]) -> list[AssistantBlock]:
    """A text block (also when there is nothing else), then one tool_use block per call."""
    blocks: list[AssistantBlock] = [TextBlock(text)] if text or not calls else []
    return blocks + [_tool_use(call) for call in calls]


def _tool_use(call: ToolCall) -> ToolUseBlock:
    return ToolUseBlock(call.id, call.name, msgspec.json.decode(call.arguments))


class _Blocks:
    """Content blocks as Messages events: thinking first, text blocks on the first text, tool_use blocks as
    their input is written (or whole). One block is open at a time; opening the next closes it."""

    def __init__(self, seal: ReasoningSeal, omitted: bool) -> None:
        self.seal, self.omitted = seal, omitted
        self.count = 0
        self.open: str | None = None  # "thinking" | "text" | a tool call's id
        self.thinking: list[str] = []
        self.calls: set[str] = set()

    def _start(self, kind: str, block: AssistantBlock) -> list[bytes]:
        events = self.close()
        self.open = kind
        return [*events, _event(StreamEvent("content_block_start", index=self.count, content_block=block))]

    def _delta(self, delta: Delta) -> bytes:
        return _event(StreamEvent("content_block_delta", index=self.count, delta=delta))

    def reasoning(self, text: str) -> list[bytes]:
        events = [] if self.open == "thinking" else self._start("thinking", ThinkingBlock("", ""))
        self.thinking.append(text)
        return events if self.omitted else [*events, self._delta(Delta("thinking_delta", thinking=text))]

    def text(self, text: str) -> list[bytes]:
        events = [] if self.open == "text" else self._start("text", TextBlock(""))
        return [*events, self._delta(Delta("text_delta", text))]

    def tool_input(self, call_id: str, name: str, partial: str) -> list[bytes]:
        events = []
        if self.open != call_id:
            events = self._start(call_id, ToolUseBlock(call_id, name, {}))
            self.calls.add(call_id)
        return [*events, self._delta(Delta("input_json_delta", partial_json=partial))] if partial else events

    def call(self, call: ToolCall) -> list[bytes]:
        if call.id in self.calls:  # streamed already: its block ends here
            return self.close() if self.open == call.id else []
        return [*self.tool_input(call.id, call.name, call.arguments), *self.close()]

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        events = []
        if self.open == "thinking":  # the signature just before the block stops, as Anthropic sends it
            signature = self.seal.seal("".join(self.thinking))
            events.append(self._delta(Delta("signature_delta", signature=signature)))
        self.open = None
        self.count += 1
        return [*events, _event(StreamEvent("content_block_stop", index=self.count - 1))]


async def _stream_events(
    stack: AsyncExitStack,
    stream: AsyncIterator[GenerationChunk],
    model: str,
    usage: _Usage,
    seal: ReasoningSeal,
    omitted: bool,
) -> AsyncIterator[bytes]:
    """message_start (with the prompt's usage), ping, the blocks' events, message_delta, message_stop."""
    blocks = _Blocks(seal, omitted)
    try:
        started = False
        async for chunk in stream:
            if not started:  # the first chunk knows the prompt's size: clients read it from message_start
                start = usage.of(chunk.prompt_tokens, 0, chunk.cached_tokens)
                yield _event(
                    StreamEvent(
                        "message_start",
                        message=Message(id=_message_id(), content=[], model=model, usage=start),
                    )
                )
                yield _event(StreamEvent("ping"))
                started = True
            for event in _chunk_events(blocks, chunk):
                yield event
            if chunk.finish_reason is not None:
                # An empty reply is still one (empty) text block, as in the non-streamed message.
                for event in [
                    *(blocks.text("") if not blocks.count and blocks.open is None else []),
                    *blocks.close(),
                ]:
                    yield event
                reason = STOP_REASONS.get(chunk.finish_reason, "end_turn")
                final = usage.of(chunk.prompt_tokens, chunk.completion_tokens, chunk.cached_tokens)
                counts = DeltaUsage(final.output_tokens, final.input_tokens, 0, final.cache_read_input_tokens)
                end = Delta(stop_reason=reason, stop_sequence=None)
                yield _event(StreamEvent("message_delta", delta=end, usage=counts))
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


def _chunk_events(blocks: _Blocks, chunk: GenerationChunk) -> list[bytes]:
    events = blocks.reasoning(chunk.reasoning) if chunk.reasoning else []
    if chunk.text:
        events += blocks.text(chunk.text)
    for delta in chunk.tool_call_deltas or []:
        events += blocks.tool_input(delta.id, delta.name, delta.arguments)
    for call in chunk.tool_calls or []:
        events += blocks.call(call)
    return events
