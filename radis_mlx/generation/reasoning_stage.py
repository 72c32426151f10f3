"""The reasoning stage of a generation: switches for the template, the split, and the budget.

Between the engine and tool calling (runner.generate_until): the request's ReasoningOptions become the
template's variables; the engine's text becomes `reasoning` and answer `text` (tool calls are then parsed
from the answer only); a reasoning budget that runs out ends that generation and continues it with the
reasoning so far and the family's end marker as the reply's prefix, so the model goes on to the answer.
The continuation is an ordinary generation on every engine (prompt caches make its prefill the new tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

from radis_mlx.generation.harmony import HarmonyParser, Split
from radis_mlx.generation.reasoning import (
    ReasoningFormat,
    ThinkSplitter,
    reasoning_enabled,
    starts_inside,
    template_switches,
)
from radis_mlx.generation.types import GenerationChunk, GenerationRequest

Generate = Callable[[GenerationRequest], AsyncIterator[GenerationChunk]]


def with_reasoning(generate: Generate, fmt: ReasoningFormat | None, template: str | None) -> Generate:
    """`generate` with reasoning kept out of the answer; models without a format pass through."""
    if fmt is None:
        return generate

    def run(request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return _reasoned(generate, fmt, template, request)

    return run


class _Splitter:
    """One interface over the <think>-style splitter and the harmony parser."""

    def __init__(self, fmt: ReasoningFormat, inside: bool) -> None:
        self.harmony = HarmonyParser() if fmt.harmony else None
        self.think = None if fmt.harmony else ThinkSplitter(fmt, inside)

    @property
    def inside(self) -> bool:
        if self.think is not None:
            return self.think.inside
        assert self.harmony is not None
        return self.harmony.in_reasoning

    def feed(self, text: str) -> Split:
        if self.think is not None:
            return Split(*self.think.feed(text))
        assert self.harmony is not None
        return self.harmony.feed(text)

    def finish(self) -> Split:
        if self.think is not None:
            return Split(*self.think.finish())
        assert self.harmony is not None
        return self.harmony.finish()


def _prepare(
    fmt: ReasoningFormat, template: str | None, request: GenerationRequest
) -> tuple[GenerationRequest, bool]:
    """The request with the template's switches set, and whether the output starts inside reasoning."""
    switches = template_switches(fmt, request.reasoning) | request.template_kwargs
    inside = starts_inside(template, fmt, switches)
    prefix = request.assistant_prefix
    constrained = request.json_schema is not None or request.grammar is not None
    closed = reasoning_enabled(request.reasoning) is False or constrained
    if closed and (inside or fmt.harmony):
        # Reasoning is off (or the reply is constrained) but the prompt opened it: close it at once.
        prefix = (fmt.close if inside else "<|channel|>final<|message|>") + prefix
    elif _budget(fmt, request) == 0 and inside:
        prefix = fmt.close + prefix
    return dataclasses.replace(request, template_kwargs=switches, assistant_prefix=prefix), inside


async def _reasoned(
    generate: Generate, fmt: ReasoningFormat, template: str | None, request: GenerationRequest
) -> AsyncIterator[GenerationChunk]:
    prepared, inside = _prepare(fmt, template, request)
    splitter = _Splitter(fmt, inside)
    splitter.feed(prepared.assistant_prefix)  # the prefix is no output, but it moves the splitter's state
    budget = _budget(fmt, request)
    written: list[str] = []  # raw text so far (a continuation's prefix)
    used = reasoning_tokens = generated = 0
    called = False  # a call was parsed here (harmony)
    first: GenerationChunk | None = None
    stream = generate(prepared)
    try:
        while True:
            async for chunk in stream:
                first = first or chunk
                was_inside = splitter.inside
                split = splitter.feed(chunk.text)
                written.append(chunk.text)
                generated += chunk.tokens
                if was_inside or split.reasoning:
                    used += chunk.tokens
                    reasoning_tokens += chunk.tokens
                called = called or bool(split.calls)
                if chunk.finish_reason is not None:
                    tail = _join(split, splitter.finish())
                    yield _out(chunk, tail, first, reasoning_tokens, called or bool(tail.calls))
                    return
                if split.reasoning or split.content or split.deltas or split.calls or chunk.logprobs:
                    yield _out(chunk, split, first, reasoning_tokens, called)
                if budget is not None and splitter.inside and used >= budget:
                    break  # the budget ran out inside the reasoning: close it and continue
            else:
                return
            await stream.aclose()  # type: ignore[attr-defined]
            splitter.feed(fmt.close)
            prefix = prepared.assistant_prefix + "".join(written) + fmt.close
            left = None if request.max_tokens is None else request.max_tokens - generated
            if left is not None and left <= 0:
                yield GenerationChunk(
                    "",
                    "length",
                    first.prompt_tokens if first else 0,
                    generated,
                    tokens=0,
                    cached_tokens=first.cached_tokens if first else 0,
                    reasoning_tokens=reasoning_tokens,
                )
                return
            # An output grammar covered the reasoning it ended; the answer after it is the model's own.
            prepared = dataclasses.replace(
                prepared, assistant_prefix=prefix, max_tokens=left, output_grammar=None
            )
            budget = None
            stream = _counted(generate(prepared), generated)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _counted(stream: AsyncIterator[GenerationChunk], before: int) -> AsyncIterator[GenerationChunk]:
    """A continuation's chunks with the first pass's tokens added to its final count."""
    try:
        async for chunk in stream:
            if chunk.finish_reason is not None:
                chunk = dataclasses.replace(chunk, completion_tokens=chunk.completion_tokens + before)
            yield chunk
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _budget(fmt: ReasoningFormat, request: GenerationRequest) -> int | None:
    """The request's reasoning budget, else the model's (models.toml reasoning_budget)."""
    return request.reasoning.budget if request.reasoning.budget is not None else fmt.budget


def _join(a: Split, b: Split) -> Split:
    return Split(a.reasoning + b.reasoning, a.content + b.content, a.deltas + b.deltas, a.calls + b.calls)


def _out(
    chunk: GenerationChunk, split: Split, first: GenerationChunk, reasoning_tokens: int, called: bool
) -> GenerationChunk:
    """The engine's chunk with its text split; counts of the whole reply on the last one."""
    final = chunk.finish_reason is not None
    return dataclasses.replace(
        chunk,
        text=split.content,
        reasoning=split.reasoning,
        tool_call_deltas=split.deltas or None,
        tool_calls=split.calls or None,
        prompt_tokens=chunk.prompt_tokens or first.prompt_tokens,
        cached_tokens=chunk.cached_tokens or first.cached_tokens,
        finish_reason="tool_calls"
        if final and called and chunk.finish_reason == "stop"
        else chunk.finish_reason,
        reasoning_tokens=reasoning_tokens if final else 0,
        completion_tokens=chunk.completion_tokens if final else 0,
    )
