"""The chat completion object and its stream chunks, named and ordered as in the OpenAI reference."""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, Struct, UnsetType

from radis_mlx.generation.types import TokenLogprob, ToolCall
from radis_mlx.schemas.chat import ChatCompletionMessageToolCall, Function
from radis_mlx.schemas.common import CompletionUsage


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatCompletionTokenLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(Struct):
    content: list[ChatCompletionTokenLogprob] | None
    refusal: list[ChatCompletionTokenLogprob] | None = None

    @classmethod
    def of(cls, entries: list[TokenLogprob] | None) -> ChoiceLogprobs | None:
        """OpenAI's logprobs for the engine's tokens; None when none were asked for."""
        if entries is None:
            return None
        return cls(
            [
                ChatCompletionTokenLogprob(
                    e.token,
                    e.logprob,
                    list(e.bytes),
                    [TopLogprob(t.token, t.logprob, list(t.bytes)) for t in e.top],
                )
                for e in entries
            ]
        )


class ChatCompletionMessage(Struct):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | UnsetType = UNSET
    # A reasoning model's reasoning, under both names in use: DeepSeek's, llama.cpp's and LM Studio's, and
    # vLLM's, Ollama's and OpenRouter's.
    reasoning_content: str | UnsetType = UNSET
    reasoning: str | UnsetType = UNSET

    @classmethod
    def of(cls, text: str, calls: list[ToolCall], reasoning: str = "") -> ChatCompletionMessage:
        """The reply: its text (None when it only calls tools), its calls and its reasoning."""
        thought = reasoning or UNSET
        if not calls:
            return cls("assistant", text, reasoning_content=thought, reasoning=thought)
        tool_calls = [ChatCompletionMessageToolCall(c.id, Function(c.name, c.arguments)) for c in calls]
        return cls(
            "assistant", text or None, tool_calls=tool_calls, reasoning_content=thought, reasoning=thought
        )


class Choice(Struct):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: str


class ChatCompletion(Struct):
    id: str
    choices: list[Choice]
    created: int
    model: str
    usage: CompletionUsage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class ChoiceDeltaToolCallFunction(Struct):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ChoiceDeltaToolCall(Struct):
    """A fragment of a call: the first names it (id, type, name), later ones add argument text."""

    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: ChoiceDeltaToolCallFunction | UnsetType = UNSET

    @classmethod
    def fragments(cls, index: int, call: ToolCall) -> list[ChoiceDeltaToolCall]:
        """A finished call as the two fragments the SDKs reassemble: its name, then its arguments."""
        return [cls.opening(index, call.id, call.name), cls.arguments(index, call.arguments)]

    @classmethod
    def opening(cls, index: int, call_id: str, name: str) -> ChoiceDeltaToolCall:
        """The fragment that names a call."""
        return cls(index, call_id, "function", ChoiceDeltaToolCallFunction(name, ""))

    @classmethod
    def arguments(cls, index: int, text: str) -> ChoiceDeltaToolCall:
        """A fragment of a call's argument text."""
        return cls(index, function=ChoiceDeltaToolCallFunction(arguments=text))


class ChoiceDelta(Struct):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET
    reasoning: str | UnsetType = UNSET
    tool_calls: list[ChoiceDeltaToolCall] | UnsetType = UNSET


class ChunkChoice(Struct):
    index: int
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(Struct):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: CompletionUsage | UnsetType = UNSET
