"""POST /v1/responses (the OpenAI Responses API), named and ordered as in the OpenAI reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import ANY_OBJECT, schema_grammar
from radis_mlx.generation.tools import check_tools
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationRequest,
    ToolCall,
    ToolDefinition,
)
from radis_mlx.schemas.common import (
    MAX_TOOLS,
    MaxTokens,
    Metadata,
    SamplingFields,
    Temperature,
    TopP,
    TtlSeconds,
    User,
)


class InputText(Struct, tag_field="type", tag="input_text"):
    text: str


class OutputText(Struct, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] | UnsetType = UNSET


class InputImage(Struct, tag_field="type", tag="input_image"):
    image_url: str | None = None


class InputFile(Struct, tag_field="type", tag="input_file"):
    file_id: str | None = None


class Refusal(Struct, tag_field="type", tag="refusal"):
    refusal: str


InputContent = InputText | OutputText | InputImage | InputFile | Refusal


class InputMessage(Struct):
    """A message item (`type` may be left out); assistant turns carry output_text parts."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContent]
    type: Literal["message"] = "message"
    id: str | None = None
    status: str | None = None


class FunctionCall(Struct, tag_field="type", tag="function_call"):
    """A call the model made (an output item; sent back as input in later turns)."""

    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = "completed"


class FunctionCallOutput(Struct):
    call_id: str
    output: str | list[InputContent]
    type: Literal["function_call_output"] = "function_call_output"


class FunctionTool(Struct, tag_field="type", tag="function"):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    parameters: dict[str, Any] | None = None
    # Arguments always match the schema here (constrained decoding); strict only matters to OpenAI.
    strict: bool | None = None
    description: str | None = None

    def to_definition(self) -> ToolDefinition:
        """The engine's view of this tool."""
        if self.parameters is None:
            return ToolDefinition(self.name, self.description or "")
        return ToolDefinition(self.name, self.description or "", self.parameters)


class ToolChoiceFunction(Struct, tag_field="type", tag="function"):
    name: str


ToolChoiceOption = Literal["none", "auto", "required"] | ToolChoiceFunction


class FormatText(Struct, tag_field="type", tag="text"):
    pass


class FormatJsonObject(Struct, tag_field="type", tag="json_object"):
    pass


class FormatJsonSchema(Struct, tag_field="type", tag="json_schema", kw_only=True):
    name: str = "response"
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class TextConfig(Struct, omit_defaults=True):
    format: FormatText | FormatJsonObject | FormatJsonSchema = msgspec.field(default_factory=FormatText)
    verbosity: str | None = None


class ResponseCreateRequest(Struct, kw_only=True):
    model: str
    input: str | list[dict[str, Any]]
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    include: list[str] | None = None
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    # Accepted and kept on the response; nothing else is done with them.
    metadata: Metadata | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    service_tier: str | None = None
    store: bool = True
    stream: bool = False
    temperature: Temperature | None = None
    text: TextConfig | None = None
    tool_choice: ToolChoiceOption = "auto"
    tools: Annotated[list[FunctionTool], Meta(max_length=MAX_TOOLS)] = msgspec.field(default_factory=list)
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    top_p: TopP | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    user: User | None = None
    # Extension (LM Studio): seconds this model may stay loaded while idle, from this request on.
    ttl: TtlSeconds | None = None

    def input_messages(self) -> list[ChatMessage]:
        """This request's own input, as chat messages (instructions not included)."""
        if isinstance(self.input, str):
            return [ChatMessage("user", self.input)]
        messages: list[ChatMessage] = []
        for index, item in enumerate(self.input):
            message = _input_item(item, index)
            last = messages[-1] if messages else None
            # A text message then function_call items (or several calls) are one assistant turn.
            if message.tool_calls and last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), *message.tool_calls]
            else:
                messages.append(message)
        return messages

    def to_generation(self, history: list[ChatMessage], defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view: instructions, then the earlier turns, then this input."""
        self._refuse_unsupported()
        system = [ChatMessage("system", self.instructions)] if self.instructions else []
        sampling = SamplingFields(temperature=self.temperature, top_p=self.top_p)
        choice = self.tool_choice
        generation = GenerationRequest(
            messages=[*system, *history, *self.input_messages()],
            max_tokens=self.max_output_tokens or defaults.max_tokens,
            sampling=sampling.to_sampling_params(defaults),
            json_schema=self.json_schema(),
            tools=[t.to_definition() for t in self.tools] or None,
            tool_choice=FunctionChoice(choice.name) if isinstance(choice, ToolChoiceFunction) else choice,
            parallel_tool_calls=self.parallel_tool_calls,
        )
        check_tools(generation, "tools[{}].parameters")
        return generation

    def json_schema(self) -> dict[str, Any] | None:
        """The schema text.format asks for (checked enforceable now), or None for free text."""
        fmt = self.text.format if self.text else None
        if isinstance(fmt, FormatJsonObject):
            return ANY_OBJECT
        if isinstance(fmt, FormatJsonSchema):
            schema_grammar(fmt.schema, param="text.format")
            return fmt.schema
        return None

    def _refuse_unsupported(self) -> None:
        refused = {
            "background": self.background,
            "conversation": self.conversation,
            "include": self.include,
            "reasoning": self.reasoning,
            "top_logprobs": self.top_logprobs,
            "truncation": self.truncation == "auto",
        }
        for name, value in refused.items():
            if value:
                raise InvalidRequestError(f"{name} is not supported by this server", param=name)


_ITEM_TYPES: dict[str, type[Struct]] = {
    "message": InputMessage,
    "function_call": FunctionCall,
    "function_call_output": FunctionCallOutput,
}


def _input_item(item: dict[str, Any], index: int) -> ChatMessage:
    kind = item.get("type", "message")
    if kind not in _ITEM_TYPES:
        raise InvalidRequestError(
            f"input items of type '{kind}' are not supported", param=f"input[{index}].type"
        )
    try:
        decoded = msgspec.convert(item, _ITEM_TYPES[kind])
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"{exc} (in input[{index}])", param=f"input[{index}]") from None
    if isinstance(decoded, FunctionCall):
        _check_arguments(decoded.arguments, f"input[{index}].arguments")
        return ChatMessage("assistant", None, [ToolCall(decoded.call_id, decoded.name, decoded.arguments)])
    if isinstance(decoded, FunctionCallOutput):
        output = _text(decoded.output, f"input[{index}].output")
        return ChatMessage("tool", output, tool_call_id=decoded.call_id)
    assert isinstance(decoded, InputMessage)
    role = "system" if decoded.role == "developer" else decoded.role
    return ChatMessage(role, _text(decoded.content, f"input[{index}].content"))


def _check_arguments(arguments: str, param: str) -> None:
    try:
        msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        raise InvalidRequestError("arguments must be a JSON text", param=param) from None


def _text(content: str | list[InputContent], param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if isinstance(part, InputText | OutputText):
            texts.append(part.text)
        elif isinstance(part, Refusal):
            texts.append(part.refusal)
        else:
            kind = type(part).__struct_config__.tag
            raise InvalidRequestError(f"content parts of type '{kind}' are not supported", param=param)
    return "\n".join(texts)
