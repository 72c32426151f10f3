"""POST /v1/messages (the Anthropic Messages API), named and ordered as in Anthropic's reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import schema_grammar
from radis_mlx.generation.tools import check_tools
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationRequest,
    ToolCall,
    ToolDefinition,
)
from radis_mlx.generation.types import ToolChoice as EngineToolChoice
from radis_mlx.schemas.common import MAX_TOOLS, MaxTokens, SamplingFields, StopList, TtlSeconds
from radis_mlx.schemas.errors import AnthropicErrorDetail


class TextBlock(Struct, tag_field="type", tag="text"):
    text: str


class ImageBlock(Struct, tag_field="type", tag="image"):
    source: dict[str, Any]


class DocumentBlock(Struct, tag_field="type", tag="document"):
    source: dict[str, Any]


class ToolUseBlock(Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Struct, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[dict[str, Any]] = ""
    is_error: bool = False


class ThinkingBlock(Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""


ContentBlock = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock


class MessageParam(Struct):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class JsonOutputFormat(Struct):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(Struct):
    effort: str | None = None
    format: JsonOutputFormat | None = None

    def json_schema(self) -> dict[str, Any] | None:
        """The schema the output must match (checked enforceable now); effort has no meaning here."""
        if self.effort is not None:
            raise InvalidRequestError("output_config.effort is not supported", param="output_config.effort")
        if self.format is None:
            return None
        schema_grammar(self.format.schema, param="output_config.format")
        return self.format.schema


class Tool(Struct, kw_only=True):
    """A client tool (Anthropic's server tools have other types and no input_schema: refused)."""

    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,128}$")]
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False

    def to_choice(self) -> EngineToolChoice:
        """Anthropic's choice in the engine's words: any = required, tool = that one function."""
        if self.type == "tool":
            if not self.name:
                raise InvalidRequestError("tool_choice of type 'tool' needs a name", param="tool_choice.name")
            return FunctionChoice(self.name)
        return "required" if self.type == "any" else self.type


class MessageCountTokensRequest(Struct, kw_only=True):
    model: str
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    thinking: dict[str, Any] | None = None
    tool_choice: ToolChoice | None = None
    tools: Annotated[list[Tool], Meta(max_length=MAX_TOOLS)] | None = None

    def chat_messages(self) -> list[ChatMessage]:
        """system, then the turns, as the engine's chat messages; refuses what we would ignore."""
        if self.thinking and self.thinking.get("type") != "disabled":
            raise InvalidRequestError("thinking is not supported by this server", param="thinking")
        if self.messages[-1].role == "assistant":
            # Anthropic continues a final assistant turn (prefill); chat templates start a new one.
            raise InvalidRequestError(
                "a final assistant message (prefill) is not supported",
                param=f"messages.{len(self.messages) - 1}",
            )
        system = self.system if isinstance(self.system, str) else "\n".join(b.text for b in self.system or [])
        turns = [m for i, message in enumerate(self.messages) for m in _turn(message, i)]
        return [ChatMessage("system", system), *turns] if system else turns

    def generation(self, **fields: Any) -> GenerationRequest:
        """The engine's view of the conversation and its tools (and any further fields)."""
        choice = self.tool_choice
        generation = GenerationRequest(
            messages=self.chat_messages(),
            tools=[ToolDefinition(t.name, t.description or "", t.input_schema) for t in self.tools]
            if self.tools is not None
            else None,
            tool_choice=choice.to_choice() if choice else "auto",
            parallel_tool_calls=not (choice and choice.disable_parallel_tool_use),
            **fields,
        )
        check_tools(generation, "tools.{}.input_schema")
        return generation


class MessageCreateRequest(MessageCountTokensRequest, kw_only=True):
    max_tokens: MaxTokens
    # Accepted and not used (metadata.user_id is for Anthropic's abuse detection).
    metadata: Annotated[dict[Annotated[str, Meta(max_length=64)], Any], Meta(max_length=16)] | None = None
    output_config: OutputConfig | None = None
    service_tier: str | None = None
    stop_sequences: StopList | None = None
    stream: bool = False
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    # Extension (LM Studio): seconds this model may stay loaded while idle, from this request on.
    ttl: TtlSeconds | None = None

    def to_generation(self, defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view of this request."""
        sampling = SamplingFields(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return self.generation(
            max_tokens=self.max_tokens,
            stop=list(self.stop_sequences or []),
            sampling=sampling.to_sampling_params(defaults),
            json_schema=self.output_config.json_schema() if self.output_config else None,
        )


def _turn(message: MessageParam, index: int) -> list[ChatMessage]:
    """One Anthropic turn as chat messages: tool results become tool messages, tool_use blocks calls."""
    if isinstance(message.content, str):
        return [ChatMessage(message.role, message.content)]
    param = f"messages.{index}.content"
    results = [
        ChatMessage("tool", _text(b.content, param), tool_call_id=b.tool_use_id)
        for b in message.content
        if isinstance(b, ToolResultBlock)
    ]
    calls = [
        ToolCall(b.id, b.name, msgspec.json.encode(b.input).decode())
        for b in message.content
        if isinstance(b, ToolUseBlock)
    ]
    rest = [b for b in message.content if not isinstance(b, ToolResultBlock | ToolUseBlock)]
    text = _text(rest, param)
    if calls:
        return [*results, ChatMessage(message.role, text or None, calls)]
    return [*results, ChatMessage(message.role, text)] if text or not results else results


def _text(content: str | list[Any], param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for block in content:
        if isinstance(block, dict):  # a tool_result's own content blocks
            try:
                block = msgspec.convert(block, ContentBlock)
            except msgspec.ValidationError as exc:
                raise InvalidRequestError(str(exc), param=param) from None
        if not isinstance(block, TextBlock):
            kind = type(block).__struct_config__.tag
            raise InvalidRequestError(f"content blocks of type '{kind}' are not supported", param=param)
        texts.append(block.text)
    return "\n".join(texts)


class Usage(Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(Struct, kw_only=True):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[TextBlock | ToolUseBlock]
    model: str
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage


class MessageTokensCount(Struct):
    input_tokens: int


# Our finish reasons in Anthropic's words.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class Delta(Struct, omit_defaults=True):
    type: str | UnsetType = UNSET
    text: str | UnsetType = UNSET
    partial_json: str | UnsetType = UNSET
    stop_reason: str | UnsetType = UNSET
    stop_sequence: str | UnsetType | None = UNSET


class DeltaUsage(Struct):
    output_tokens: int
    input_tokens: int | None = None


class StreamEvent(Struct, omit_defaults=True):
    """One server-sent Messages event: `type` plus the fields of that event type."""

    type: str
    message: Message | UnsetType = UNSET
    index: int | UnsetType = UNSET
    content_block: TextBlock | ToolUseBlock | UnsetType = UNSET
    delta: Delta | UnsetType = UNSET
    usage: DeltaUsage | UnsetType = UNSET
    error: AnthropicErrorDetail | UnsetType = UNSET
