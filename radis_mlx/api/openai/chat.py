"""POST /v1/chat/completions: decode → pool.acquire → engine.generate → encode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Stream

from radis_mlx.api.body import decode_body, new_id
from radis_mlx.api.errors import sse_error
from radis_mlx.api.run import converted, open_stream, run_collected
from radis_mlx.api.sse import SSE_DONE, sse, sse_response
from radis_mlx.generation.runner import Generate, choice_requests
from radis_mlx.generation.types import GenerationChunk, GenerationRequest
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.chat import ChatCompletionRequest
from radis_mlx.schemas.chat_completion import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceLogprobs,
    ChunkChoice,
)
from radis_mlx.schemas.common import CompletionUsage, unix_time


@post(
    "/v1/chat/completions",
    status_code=200,
    summary="Create a chat completion",
    tags=["OpenAI"],
    opt={"request": ChatCompletionRequest},
)
async def create_chat_completion(
    request: Request, pool: NamedDependency[ModelPool]
) -> ChatCompletion | Stream:
    body = decode_body(await request.body(), ChatCompletionRequest)
    defaults = pool.get(body.model).entry.defaults
    compiles = bool(body.tools) or body.response_format is not None or body.grammar is not None
    generations = choice_requests(
        await converted(lambda: body.to_generation(defaults), compiles=compiles), body.n
    )
    if body.stream:
        stack, generate, first = await open_stream(pool, body.model, body.ttl, generations[0])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream_events(stack, generate, first, generations, body.model, include_usage)
        return sse_response(events, first, pool.config.server.keepalive_interval)

    outcomes = await run_collected(pool, body.model, body.ttl, generations)
    return ChatCompletion(
        id=new_id("chatcmpl"),
        created=unix_time(),
        model=body.model,
        choices=[
            Choice(
                i,
                ChatCompletionMessage.of(o.text, o.tool_calls, o.reasoning),
                ChoiceLogprobs.of(o.logprobs),
                o.finish_reason,
            )
            for i, o in enumerate(outcomes)
        ],
        usage=CompletionUsage.of(
            outcomes[0].prompt_tokens,
            sum(o.completion_tokens for o in outcomes),
            outcomes[0].cached_tokens,
            sum(o.reasoning_tokens for o in outcomes),
            outcomes[0].image_tokens,
        ),
    )


_ROLE_DELTA = ChoiceDelta(role="assistant", content="")


class _CallFragments:
    """Tool calls as chat delta fragments: argument text as it is written, or a whole call at once."""

    def __init__(self) -> None:
        self.streamed: dict[str, int] = {}  # call id → its index, for calls that came as deltas
        self.count = 0

    def of(self, piece: GenerationChunk) -> list[ChoiceDeltaToolCall]:
        fragments = []
        for delta in piece.tool_call_deltas or []:
            if delta.id not in self.streamed:
                self.streamed[delta.id] = self.count
                self.count += 1
                fragments.append(ChoiceDeltaToolCall.opening(self.streamed[delta.id], delta.id, delta.name))
            if delta.arguments:
                fragments.append(ChoiceDeltaToolCall.arguments(self.streamed[delta.id], delta.arguments))
        for call in piece.tool_calls or []:
            if call.id not in self.streamed:  # completed without deltas: name and arguments at once
                fragments += ChoiceDeltaToolCall.fragments(self.count, call)
                self.count += 1
        return fragments


async def _stream_events(
    stack: AsyncExitStack,
    generate: Generate,
    first: AsyncIterator[GenerationChunk],
    generations: list[GenerationRequest],
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    completion_id, created = new_id("chatcmpl"), unix_time()

    def chunk(
        index: int, delta: ChoiceDelta, finish: str | None = None, logprobs: ChoiceLogprobs | None = None
    ) -> bytes:
        choice = ChunkChoice(index, delta, logprobs, finish)
        return sse(ChatCompletionChunk(completion_id, [choice], created, model))

    prompt_tokens = completion_tokens = cached_tokens = reasoning_tokens = image_tokens = 0
    try:
        for index, generation in enumerate(generations):
            stream = first if index == 0 else generate(generation)
            # With tools no content yet: the SDKs' stream helpers then end with content None (only calls).
            yield chunk(index, ChoiceDelta(role="assistant") if generation.tools else _ROLE_DELTA)
            calls = _CallFragments()
            async for piece in stream:
                if piece.reasoning:
                    yield chunk(
                        index, ChoiceDelta(reasoning_content=piece.reasoning, reasoning=piece.reasoning)
                    )
                if piece.text or piece.logprobs:
                    yield chunk(
                        index, ChoiceDelta(content=piece.text), logprobs=ChoiceLogprobs.of(piece.logprobs)
                    )
                for fragment in calls.of(piece):
                    yield chunk(index, ChoiceDelta(tool_calls=[fragment]))
                if piece.finish_reason is not None:
                    prompt_tokens = piece.prompt_tokens
                    completion_tokens += piece.completion_tokens
                    reasoning_tokens += piece.reasoning_tokens
                    cached_tokens = piece.cached_tokens if index == 0 else cached_tokens
                    image_tokens = piece.image_tokens if index == 0 else image_tokens
                    yield chunk(index, ChoiceDelta(), piece.finish_reason)
        if include_usage:
            usage = CompletionUsage.of(
                prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, image_tokens
            )
            yield sse(ChatCompletionChunk(completion_id, [], created, model, usage=usage))
    except Exception as exc:
        yield sse_error(exc)
    finally:
        await first.aclose()  # type: ignore[attr-defined]
        await stack.aclose()
    yield SSE_DONE
