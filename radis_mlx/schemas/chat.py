"""POST /v1/chat/completions, named and ordered as in the OpenAI reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import ANY_OBJECT, schema_grammar
from radis_mlx.generation.tools import check_tools
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationRequest,
    ImageInput,
    ReasoningOptions,
    ToolCall,
    ToolChoice,
    ToolDefinition,
    message_with_parts,
)
from radis_mlx.schemas.common import (
    MAX_TOOLS,
    BudgetTokens,
    ChoiceCount,
    MaxTokens,
    Metadata,
    ReasoningEffort,
    SamplingFields,
    StreamOptions,
    TtlSeconds,
    User,
    check_budget,
    output_grammar,
    template_switch,
    template_variables,
    with_default_system,
)


class TextContentPart(Struct, tag_field="type", tag="text"):
    text: str


class ImageURL(Struct):
    # A base64 data: URL, or an http(s) URL (fetched only where the server allows it).
    url: str
    # Accepted: the model's processor decides the resolution.
    detail: Literal["auto", "low", "high"] | None = None


class ImageContentPart(Struct, tag_field="type", tag="image_url"):
    image_url: ImageURL


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


class Function(Struct):
    name: str
    # JSON text, as the model wrote it.
    arguments: str


class ChatCompletionMessageToolCall(Struct, tag_field="type", tag="function"):
    id: str
    function: Function


class AssistantMessage(Struct, tag_field="role", tag="assistant"):
    content: Content | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    # Earlier reasoning sent back: DeepSeek's and llama.cpp's name, and vLLM's and Ollama's.
    reasoning_content: str | None = None
    reasoning: str | None = None


class ToolMessage(Struct, tag_field="role", tag="tool"):
    content: Content
    tool_call_id: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDefinition(Struct):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    # A JSON schema for the arguments; left out: a function without arguments.
    parameters: dict[str, Any] | None = None
    # Arguments always match the schema here (constrained decoding); strict only matters to OpenAI.
    strict: bool | None = None


class ChatCompletionFunctionTool(Struct, tag_field="type", tag="function"):
    function: FunctionDefinition

    def to_definition(self) -> ToolDefinition:
        """The engine's view of this tool."""
        f = self.function
        if f.parameters is None:
            return ToolDefinition(f.name, f.description or "")
        return ToolDefinition(f.name, f.description or "", f.parameters)


class NamedFunction(Struct):
    name: str


class ChatCompletionNamedToolChoice(Struct, tag_field="type", tag="function"):
    function: NamedFunction


class JsonSchemaFormat(Struct):
    name: str = "response"
    description: str | None = None
    schema: dict[str, Any] | None = None
    # Schemas are always enforced; strict only matters to OpenAI, which enforces them only when true.
    strict: bool | None = None


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def to_schema(self) -> dict[str, Any] | None:
        """The JSON schema output must match (checked enforceable now), or None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return ANY_OBJECT
        if self.json_schema is None:
            raise InvalidRequestError(
                "response_format of type 'json_schema' needs a json_schema",
                param="response_format.json_schema",
            )
        schema = self.json_schema.schema if self.json_schema.schema is not None else {}
        schema_grammar(schema)
        return schema


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[Message], Meta(min_length=1)]
    model: str
    logprobs: bool | None = None
    max_completion_tokens: MaxTokens | None = None
    max_tokens: MaxTokens | None = None
    # Accepted and not used: nothing is stored and there is one service tier.
    metadata: Metadata | None = None
    n: ChoiceCount = 1
    response_format: ResponseFormat | None = None
    service_tier: str | None = None
    store: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    parallel_tool_calls: bool | None = None
    tool_choice: Literal["none", "auto", "required"] | ChatCompletionNamedToolChoice | None = None
    tools: Annotated[list[ChatCompletionFunctionTool], Meta(max_length=MAX_TOOLS)] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    user: User | None = None
    reasoning_effort: ReasoningEffort | None = None
    # Extensions: variables for the chat template (vLLM's and llama.cpp's name), e.g. enable_thinking;
    # a reasoning budget in tokens (llama.cpp's names); the idle TTL (LM Studio).
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_budget_tokens: BudgetTokens | None = None
    thinking_budget_tokens: BudgetTokens | None = None
    ttl: TtlSeconds | None = None

    def to_generation(self, defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view of this request; refuses what we would otherwise silently ignore."""
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs set to true", param="top_logprobs")
        max_tokens = self.max_completion_tokens or self.max_tokens or defaults.max_tokens
        budget = (
            self.reasoning_budget_tokens
            if self.reasoning_budget_tokens is not None
            else self.thinking_budget_tokens
        )
        check_budget(budget, max_tokens, "reasoning_budget_tokens")
        reasoning = ReasoningOptions(
            self.reasoning_effort, template_switch(self.chat_template_kwargs, "chat_template_kwargs"), budget
        )
        messages = [_to_chat_message(m, i) for i, m in enumerate(self.messages)]
        generation = GenerationRequest(
            messages=with_default_system(messages, defaults),
            max_tokens=max_tokens,
            stop=self.stop_list(defaults),
            sampling=self.to_sampling_params(defaults),
            json_schema=self.response_format.to_schema() if self.response_format else None,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            tools=[t.to_definition() for t in self.tools] if self.tools is not None else None,
            tool_choice=self._tool_choice(),
            parallel_tool_calls=self.parallel_tool_calls is not False,
            reasoning=reasoning,
            template_kwargs=template_variables(self.chat_template_kwargs, "chat_template_kwargs"),
            output_grammar=output_grammar(self.grammar),
        )
        check_tools(generation)
        return generation

    def _tool_choice(self) -> ToolChoice:
        choice = self.tool_choice
        if isinstance(choice, ChatCompletionNamedToolChoice):
            return FunctionChoice(choice.function.name)
        return choice or "auto"


def _to_chat_message(message: Message, index: int) -> ChatMessage:
    role = "system" if isinstance(message, DeveloperMessage) else type(message).__struct_config__.tag
    if isinstance(message, ToolMessage):
        return ChatMessage("tool", _text(message.content, index), tool_call_id=message.tool_call_id)
    if isinstance(message, AssistantMessage):
        calls = [
            _to_tool_call(c, f"messages[{index}].tool_calls[{i}]")
            for i, c in enumerate(message.tool_calls or [])
        ]
        content = _text(message.content, index) if message.content is not None or not calls else None
        reasoning = message.reasoning_content if message.reasoning_content is not None else message.reasoning
        return ChatMessage("assistant", content, tool_calls=calls or None, reasoning=reasoning)
    if isinstance(message, UserMessage) and not isinstance(message.content, str):
        return message_with_parts("user", _parts(message.content, index))
    return ChatMessage(role=str(role), content=_text(message.content, index))


def _parts(content: list[ContentPart], index: int) -> list[str | ImageInput]:
    """A user message's text and images, in order (audio is refused)."""
    parts: list[str | ImageInput] = []
    for j, part in enumerate(content):
        if isinstance(part, TextContentPart):
            parts.append(part.text)
        elif isinstance(part, ImageContentPart):
            parts.append(ImageInput(part.image_url.url, f"messages[{index}].content[{j}].image_url"))
        else:
            raise InvalidRequestError(
                "content parts of type 'input_audio' are not supported", param=f"messages[{index}].content"
            )
    return parts


def _to_tool_call(call: ChatCompletionMessageToolCall, param: str) -> ToolCall:
    try:
        msgspec.json.decode(call.function.arguments)
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "arguments must be a JSON text", param=f"{param}.function.arguments"
        ) from None
    return ToolCall(call.id, call.function.name, call.function.arguments)


def _text(content: Content | None, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if not isinstance(part, TextContentPart):
            kind = type(part).__struct_config__.tag
            where = "only accepted in user messages" if kind == "image_url" else "not supported"
            raise InvalidRequestError(
                f"content parts of type '{kind}' are {where}", param=f"messages[{index}].content"
            )
        texts.append(part.text)
    return "\n".join(texts)
