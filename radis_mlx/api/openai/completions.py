"""POST /v1/completions: decode → pool.acquire → engine.generate per prompt and choice → encode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Stream

from radis_mlx.api.body import decode_body, new_id
from radis_mlx.api.errors import sse_error
from radis_mlx.api.metrics import count_generated_tokens
from radis_mlx.api.run import converted
from radis_mlx.api.sse import SSE_DONE, sse, sse_response, started
from radis_mlx.generation.fim import fill_in_middle
from radis_mlx.generation.runner import Generate, choice_requests, collect_all, generate_until
from radis_mlx.generation.types import GenerationChunk, GenerationRequest, TextGenerator
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.common import CompletionUsage, unix_time
from radis_mlx.schemas.completions import Completion, CompletionChoice, CompletionRequest, Logprobs


@post(
    "/v1/completions",
    status_code=200,
    summary="Create a text completion",
    tags=["OpenAI"],
    opt={"request": CompletionRequest},
)
async def create_completion(request: Request, pool: NamedDependency[ModelPool]) -> Completion | Stream:
    body = decode_body(await request.body(), CompletionRequest)
    defaults = pool.get(body.model).entry.defaults
    prompts = body.prompts()
    # Choice index = prompt index * n + choice, as OpenAI numbers them.
    generations = await converted(
        lambda: [g for p in prompts for g in choice_requests(body.to_generation(p, defaults), body.n)],
        compiles=body.grammar is not None,  # a grammar is checked once per prompt
    )
    stack = AsyncExitStack()
    try:
        # A stream runs its generations one after another; otherwise they all run at once.
        at_once = 1 if body.stream else len(generations)
        engine = await stack.enter_async_context(pool.acquire(body.model, ttl=body.ttl, generations=at_once))
        if body.suffix:
            # Whether the model can fill in the middle is known only now; the echo stays the prompt.
            generations = [
                replace(g, prompt=fill_in_middle(engine.fim_template, g.prompt, body.suffix))
                for g in generations
            ]
        echoes = [await _echo(engine, p) if body.echo else "" for p in prompts]
        echoes = [e for e in echoes for _ in range(body.n)]
        generate = generate_until(engine, pool.config.server.request_timeout, count_generated_tokens)
        if body.stream:
            first = await started(generate(generations[0]), pool.config.server.stream_grace)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _stream_events(stack, generate, first, generations, echoes, body, include_usage)
            return sse_response(events, first, pool.config.server.keepalive_interval)
        outcomes = await collect_all(generate, generations)
    except BaseException:
        await stack.aclose()
        raise
    await stack.aclose()
    prompt_tokens = sum(o.prompt_tokens for o in outcomes[:: body.n])
    cached_tokens = sum(o.cached_tokens for o in outcomes[:: body.n])
    return Completion(
        id=new_id("cmpl"),
        created=unix_time(),
        model=body.model,
        choices=[
            CompletionChoice(echo + o.text, i, Logprobs.of(o.logprobs), o.finish_reason)
            for i, (echo, o) in enumerate(zip(echoes, outcomes, strict=True))
        ],
        usage=CompletionUsage.of(prompt_tokens, sum(o.completion_tokens for o in outcomes), cached_tokens),
    )


async def _echo(engine: TextGenerator, prompt: str | list[int]) -> str:
    return prompt if isinstance(prompt, str) else await engine.detokenize(prompt)


async def _stream_events(
    stack: AsyncExitStack,
    generate: Generate,
    first: AsyncIterator[GenerationChunk],
    generations: list[GenerationRequest],
    echoes: list[str],
    body: CompletionRequest,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    completion_id, created = new_id("cmpl"), unix_time()

    def chunk(index: int, text: str, finish: str | None = None, logprobs: Logprobs | None = None) -> bytes:
        choice = CompletionChoice(text, index, logprobs, finish)
        return sse(Completion(completion_id, [choice], created, body.model))

    prompt_tokens = completion_tokens = cached_tokens = 0
    try:
        for index, generation in enumerate(generations):
            stream = first if index == 0 else generate(generation)
            offset = len(echoes[index])
            if echoes[index]:
                yield chunk(index, echoes[index])
            async for piece in stream:
                if piece.text or piece.logprobs or piece.finish_reason is not None:
                    yield chunk(index, piece.text, piece.finish_reason, Logprobs.of(piece.logprobs, offset))
                    offset += len(piece.text)
                if piece.finish_reason is not None:
                    prompt_tokens += piece.prompt_tokens if index % body.n == 0 else 0
                    cached_tokens += piece.cached_tokens if index % body.n == 0 else 0
                    completion_tokens += piece.completion_tokens
        if include_usage:
            usage = CompletionUsage.of(prompt_tokens, completion_tokens, cached_tokens)
            yield sse(Completion(completion_id, [], created, body.model, usage=usage))
    except Exception as exc:
        yield sse_error(exc)
    finally:
        await first.aclose()  # type: ignore[attr-defined]
        await stack.aclose()
    yield SSE_DONE
