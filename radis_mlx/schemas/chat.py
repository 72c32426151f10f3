"""POST /v1/chat/completions, named and ordered as in the OpenAI reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from radis_mlx.config import SamplingDefaults
from radis_mlx.engines.base import ChatMessage, GenerationRequest
from radis_mlx.errors import InvalidRequestError
from radis_mlx.schemas.common import (
    ChoiceCount,
    CompletionUsage,
    MaxTokens,
    SamplingFields,
    StreamOptions,
    TtlSeconds,
)


class TextContentPart(Struct, tag_field="type", tag="text"):
    text: str


class ImageContentPart(Struct, tag_field="type", tag="image_url"):
    image_url: dict[str, Any]


class AudioContentPart(Struct, tag_field="type", tag="input_audio"):
    input_audio: dict[str, Any]


ContentPart = TextContentPart | ImageContentPart | AudioContentPart
Content = str | list[ContentPart]


class SystemMessage(Struct, tag_field="role", tag="system"):
    content: Content
    name: str | None = None


class DeveloperMessage(Struct, tag_field="role", tag="developer"):
    content: Content
    name: str | None = None


class UserMessage(Struct, tag_field="role", tag="user"):
    content: Content
    name: str | None = None


class AssistantMessage(Struct, tag_field="role", tag="assistant"):
    content: Content | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ToolMessage(Struct, tag_field="role", tag="tool"):
    content: Content
    tool_call_id: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[Message], Meta(min_length=1)]
    model: str
    logprobs: bool | None = None
    max_completion_tokens: MaxTokens | None = None
    max_tokens: MaxTokens | None = None
    n: ChoiceCount = 1
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    user: str | None = None
    # Extension (LM Studio): seconds this model may stay loaded while idle, from this request on.
    ttl: TtlSeconds | None = None

    def to_generation(self, defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view of this request; refuses what we would otherwise silently ignore."""
        if self.logprobs:
            raise InvalidRequestError("logprobs are not supported yet", param="logprobs")
        if self.tools:
            raise InvalidRequestError("tool calling is not supported yet", param="tools")
        if self.response_format is not None and self.response_format.type != "text":
            raise InvalidRequestError(
                f"response_format '{self.response_format.type}' is not supported yet", param="response_format"
            )
        return GenerationRequest(
            messages=[_to_chat_message(m, i) for i, m in enumerate(self.messages)],
            max_tokens=self.max_completion_tokens or self.max_tokens or defaults.max_tokens,
            stop=self.stop_list(),
            sampling=self.to_sampling_params(defaults),
        )


def _to_chat_message(message: Message, index: int) -> ChatMessage:
    role = "system" if isinstance(message, DeveloperMessage) else type(message).__struct_config__.tag
    if isinstance(message, AssistantMessage) and message.tool_calls:
        raise InvalidRequestError("tool calls are not supported yet", param=f"messages[{index}].tool_calls")
    return ChatMessage(role=str(role), content=_text(message.content, index))


def _text(content: Content | None, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if not isinstance(part, TextContentPart):
            kind = type(part).__struct_config__.tag
            raise InvalidRequestError(
                f"content parts of type '{kind}' are not supported by this model",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "\n".join(texts)


class ChatCompletionMessage(Struct):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None


class Choice(Struct):
    index: int
    message: ChatCompletionMessage
    logprobs: None
    finish_reason: str


class ChatCompletion(Struct):
    id: str
    choices: list[Choice]
    created: int
    model: str
    usage: CompletionUsage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class ChoiceDelta(Struct):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class ChunkChoice(Struct):
    index: int
    delta: ChoiceDelta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(Struct):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: CompletionUsage | UnsetType = UNSET
