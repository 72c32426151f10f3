"""Tool calls out of a model's streamed reply: native calls between markers, or a constrained JSON reply.

Both keep the engine's chunk stream shape: content streams as soon as it cannot be part of a call,
each call comes once, whole, in the chunk where it completed, and the last chunk says
`finish_reason: "tool_calls"` when there were calls.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from radis_mlx.generation.chat_template import template_tools
from radis_mlx.generation.tool_stream import CallScanner
from radis_mlx.generation.types import (
    GenerationChunk,
    GenerationRequest,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
)


@dataclass(frozen=True)
class ToolFormat:
    """How a model writes tool calls natively: mlx-lm's parser and the markers around each call."""

    family: str
    parse: Callable[[str, Any], Any]
    start: str
    end: str


def loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def new_call(item: Any) -> ToolCall:
    """One parsed call (a dict with name and arguments) with a fresh id and arguments as JSON text."""
    arguments = item.get("arguments", {})
    if isinstance(arguments, str):
        arguments = loads(arguments)
    text = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(item["name"]), text)


def generic_calls(reply: Any) -> tuple[list[ToolCall], str]:
    if "tool_calls" in reply:
        return [new_call(item) for item in reply["tool_calls"]], ""
    return [], str(reply["response"])


class _Output:
    """What the parsed stream owes the caller: content, finished calls, logprobs not yet passed on."""

    def __init__(self, request: GenerationRequest) -> None:
        self.single = not request.parallel_tool_calls
        self.calls = 0
        self.text = ""
        self.space = ""  # trailing whitespace of the content, held: dropped before a call
        self.new_calls: list[ToolCall] = []
        self.deltas: list[ToolCallDelta] = []  # calls being written (JSON-bodied formats)
        self.logprobs: list[TokenLogprob] | None = None
        self.reasoning = ""  # passed through: calls are parsed from the answer only
        self.tokens = 0
        self.prompt: GenerationChunk | None = None  # the first chunk (its prompt counts travel on)

    def take(self, chunk: GenerationChunk) -> None:
        if chunk.logprobs is not None:
            self.logprobs = (self.logprobs or []) + chunk.logprobs
        self.reasoning += chunk.reasoning
        self.tokens += chunk.tokens
        self.prompt = self.prompt or chunk

    def content(self, text: str) -> None:
        kept = (self.space + text).rstrip()
        if kept:
            self.text += kept
            self.space = ""
        self.space += text[len(text.rstrip()) :] if text.strip() else text

    def call(self, call: ToolCall) -> None:
        self.space = ""
        if not (self.single and self.calls):  # parallel_tool_calls false: the first call only
            self.new_calls.append(call)
            self.calls += 1

    def stream(self, deltas: list[ToolCallDelta]) -> None:
        """Argument text as it is written (parallel_tool_calls false: the first call's only)."""
        self.deltas += [d for d in deltas if not (self.single and d.index > 0)]

    def chunk(self) -> GenerationChunk | None:
        if not (self.text or self.new_calls or self.logprobs or self.reasoning or self.deltas):
            return None
        out = GenerationChunk(
            self.text, tool_calls=self.new_calls or None, logprobs=self.logprobs, reasoning=self.reasoning
        )
        out.tool_call_deltas = self.deltas or None
        out.tokens, out.prompt_tokens = self.tokens, self.prompt.prompt_tokens if self.prompt else 0
        out.cached_tokens = self.prompt.cached_tokens if self.prompt else 0
        self.text, self.new_calls, self.logprobs, self.reasoning, self.tokens = "", [], None, "", 0
        self.deltas = []
        return out

    def last(self, chunk: GenerationChunk) -> GenerationChunk:
        if not self.calls:
            self.text += self.space
        finish = "tool_calls" if self.calls and chunk.finish_reason == "stop" else chunk.finish_reason
        out = self.chunk() or GenerationChunk("")
        return dataclasses.replace(
            chunk,
            text=out.text,
            tool_calls=out.tool_calls,
            tool_call_deltas=out.tool_call_deltas,
            logprobs=out.logprobs,
            finish_reason=finish,
            reasoning=out.reasoning,
            tokens=out.tokens,
        )


async def parse_native(
    stream: AsyncIterator[GenerationChunk], native: ToolFormat, request: GenerationRequest, *, json_body: bool
) -> AsyncIterator[GenerationChunk]:
    """Content streams as it comes; each call between the markers is parsed once it is complete.

    `json_body`: the family writes each call as `{"name", "arguments"}` JSON, so its arguments stream as
    they are written (tool_stream.py); other families' calls come whole, once parsed.
    """
    tools = template_tools(request.tools or [])
    out, buffer, inside = _Output(request), "", False
    scanner: CallScanner | None = None
    fed = 0  # of the current call's body, what the scanner has seen

    def finish_call(body: str) -> None:
        try:
            parsed = native.parse(body, tools)
            items = parsed if isinstance(parsed, list) else [parsed]
            for index, item in enumerate(items):
                out.call(streamed_call(new_call(item), scanner, index))
        except (ValueError, KeyError, TypeError, AttributeError):
            out.content(native.start + body + native.end)  # not a call after all: nothing is lost

    try:
        async for chunk in stream:
            out.take(chunk)
            buffer += chunk.text
            while True:
                if not inside:
                    at = buffer.find(native.start)
                    if at < 0:
                        keep = _partial_marker(buffer, native.start)
                        out.content(buffer[: len(buffer) - keep])
                        buffer = buffer[len(buffer) - keep :]
                        break
                    out.content(buffer[:at])
                    buffer, inside, fed = buffer[at + len(native.start) :], True, 0
                    scanner = CallScanner(1, first_index=out.calls) if json_body else None
                elif native.end and (end := buffer.find(native.end)) >= 0:
                    if scanner is not None:
                        out.stream(scanner.feed(buffer[fed:end]))
                    finish_call(buffer[:end])
                    buffer, inside, scanner = buffer[end + len(native.end) :], False, None
                else:
                    if scanner is not None:  # held back: what may be the start of the end marker
                        upto = len(buffer) - _partial_marker(buffer, native.end)
                        out.stream(scanner.feed(buffer[fed:upto]))
                        fed = max(fed, upto)
                    break
            if chunk.finish_reason is not None:
                if inside and chunk.finish_reason == "stop":
                    finish_call(buffer)  # the model ended right after the call, before the end marker
                else:
                    out.content((native.start if inside else "") + buffer)
                yield out.last(chunk)
                return
            if (piece := out.chunk()) is not None:
                yield piece
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _partial_marker(text: str, marker: str) -> int:
    """Length of the longest end of `text` that may be the start of `marker`."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


async def parse_json(
    stream: AsyncIterator[GenerationChunk],
    decode: Callable[[Any], tuple[list[ToolCall], str]],
    request: GenerationRequest,
    *,
    call_depth: int,
) -> AsyncIterator[GenerationChunk]:
    """A constrained JSON reply, decoded into calls or content once complete (cut short: the raw text).

    A generic `{"response": "..."}` reply streams its text as it comes: the JSON string, decoded; calls
    (objects at `call_depth`: 3 in `{"tool_calls": [...]}`, 1 for a lone call) stream their arguments.
    """
    out, text = _Output(request), ""
    response: _JsonString | None = None
    scanner = CallScanner(call_depth)
    try:
        async for chunk in stream:
            out.take(chunk)
            text += chunk.text
            if response is None:
                out.stream(scanner.feed(chunk.text))
            if response is None and (opened := _RESPONSE.match(text)):
                response = _JsonString()
                out.content(response.feed(text[opened.end() :]))
            elif response is not None:
                out.content(response.feed(chunk.text))
            if chunk.finish_reason is None:
                if (piece := out.chunk()) is not None:
                    yield piece
                continue
            try:
                calls, content = decode(json.loads(text)) if chunk.finish_reason == "stop" else ([], text)
            except (ValueError, KeyError, TypeError, AttributeError):
                calls, content = [], text
            if response is not None:  # streamed already: the rest of it, or (cut short) nothing more
                content = content[len(response.sent) :] if content.startswith(response.sent) else ""
            out.content(content)
            for index, call in enumerate(calls):
                out.call(streamed_call(call, scanner, index))
            yield out.last(chunk)
            return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def streamed_call(call: ToolCall, scanner: CallScanner | None, index: int) -> ToolCall:
    """A parsed call as it was streamed: the id its deltas carried, its arguments exactly their text."""
    if scanner is None or index >= len(scanner.calls):
        return call
    arguments = scanner.arguments(index)
    return ToolCall(
        scanner.calls[index].id, call.name, arguments if arguments is not None else call.arguments
    )


# The start of a generic text reply; llguidance writes it compact, a llama-server grammar may add spaces.
_RESPONSE = re.compile(r'\s*\{\s*"response"\s*:\s*"')


class _JsonString:
    """A JSON string's text as its characters arrive: decoded as far as complete, never past its end."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""
        self.closed = self.escaped = False

    def feed(self, text: str) -> str:
        """The text that became decodable."""
        if self.closed:
            return ""
        for index, char in enumerate(text):
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                text, self.closed = text[:index], True
                break
        self.raw += text
        decoded = self._decoded()
        new, self.sent = decoded[len(self.sent) :], decoded
        return new

    def _decoded(self) -> str:
        # An unfinished escape is at most 11 characters (half of a \uXXXX\uXXXX pair and a backslash).
        for cut in range(min(12, len(self.raw) + 1)):
            try:
                text = json.loads('"' + self.raw[: len(self.raw) - cut] + '"', strict=False)
            except ValueError:
                continue
            if not (text and "\ud800" <= text[-1] <= "\udbff") and text.startswith(self.sent):
                return str(text)
        return self.sent


async def custom_call(
    stream: AsyncIterator[GenerationChunk], tool: ToolDefinition, request: GenerationRequest
) -> AsyncIterator[GenerationChunk]:
    """A reply that is all one custom tool's input (its grammar forced it): that one call, streamed."""
    out = _Output(request)
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    written: list[str] = []
    try:
        async for chunk in stream:
            out.take(chunk)
            if chunk.text:
                first = [ToolCallDelta(0, call_id, tool.name, "")] if not written else []
                written.append(chunk.text)
                chunk_out = out.chunk() or GenerationChunk("")
                chunk_out.tool_call_deltas = [*first, ToolCallDelta(0, call_id, tool.name, chunk.text)]
                chunk_out.text = ""
                if chunk.finish_reason is None:
                    yield chunk_out
                    continue
            if chunk.finish_reason is not None:
                out.call(
                    ToolCall(call_id, tool.name, json.dumps({"input": "".join(written)}, ensure_ascii=False))
                )
                yield out.last(chunk)
                return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
