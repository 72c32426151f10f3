"""The Responses API's items, as input (earlier turns a client sends back) and as output, per the reference.

Codex sends its whole history every turn, with the items we gave it: messages, reasoning (with the
encrypted_content we sealed), function and custom tool calls and their outputs. `to_messages` turns them
into chat messages for the template; reasoning sent back becomes the next assistant turn's reasoning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import ChatMessage, ToolCall


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


class CustomToolCall(Struct, tag_field="type", tag="custom_tool_call"):
    """A custom (freeform) tool's call: its input is text, not JSON."""

    call_id: str
    name: str
    input: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | UnsetType = UNSET


class CustomToolCallOutput(Struct):
    call_id: str
    output: str | list[InputContent]
    type: Literal["custom_tool_call_output"] = "custom_tool_call_output"


class SummaryText(Struct, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(Struct, tag_field="type", tag="reasoning_text"):
    text: str


class ReasoningItem(Struct, tag_field="type", tag="reasoning", kw_only=True):
    """The model's reasoning: its text as summary, and (include reasoning.encrypted_content) sealed."""

    id: str | None = None
    summary: list[SummaryText] = msgspec.field(default_factory=list)
    content: list[ReasoningText] | UnsetType = UNSET
    encrypted_content: str | UnsetType | None = UNSET
    status: Literal["in_progress", "completed", "incomplete"] | UnsetType = UNSET


_ITEM_TYPES: dict[str, type[Struct]] = {
    "message": InputMessage,
    "function_call": FunctionCall,
    "function_call_output": FunctionCallOutput,
    "custom_tool_call": CustomToolCall,
    "custom_tool_call_output": CustomToolCallOutput,
    "reasoning": ReasoningItem,
}
Opener = Callable[[str], str | None]  # sealed encrypted_content → its text, None if not ours


def to_messages(items: list[dict[str, Any]], open_sealed: Opener) -> list[ChatMessage]:
    """Input items as chat messages: a text message and its calls are one assistant turn, and reasoning
    joins the assistant turn that follows it."""
    messages: list[ChatMessage] = []
    reasoning: list[str] = []
    for index, item in enumerate(items):
        decoded = _decode(item, index)
        if isinstance(decoded, ReasoningItem):
            reasoning.append(_reasoning_text(decoded, index, open_sealed))
            continue
        message = _message(decoded, index)
        last = messages[-1] if messages else None
        if message.role == "assistant" and reasoning:
            message.reasoning, reasoning = "\n".join(reasoning), []
        if message.tool_calls and last is not None and last.role == "assistant" and not message.content:
            last.tool_calls = [*(last.tool_calls or []), *message.tool_calls]
            last.reasoning = last.reasoning or message.reasoning
        else:
            messages.append(message)
    return messages


def _decode(item: dict[str, Any], index: int) -> Struct:
    kind = item.get("type", "message")
    if kind not in _ITEM_TYPES:
        raise InvalidRequestError(
            f"input items of type '{kind}' are not supported", param=f"input[{index}].type"
        )
    try:
        return msgspec.convert(item, _ITEM_TYPES[kind])
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"{exc} (in input[{index}])", param=f"input[{index}]") from None


def _reasoning_text(item: ReasoningItem, index: int, open_sealed: Opener) -> str:
    """A reasoning item's text: what its encrypted_content seals (ours, or a 400), else its own text."""
    if isinstance(item.encrypted_content, str) and item.encrypted_content:
        text = open_sealed(item.encrypted_content)
        if text is None:
            raise InvalidRequestError(
                "encrypted_content was not issued by this server", param=f"input[{index}].encrypted_content"
            )
        return text
    parts = item.content if isinstance(item.content, list) else []
    return "\n".join(p.text for p in parts) or "\n".join(s.text for s in item.summary)


def _message(decoded: Struct, index: int) -> ChatMessage:
    if isinstance(decoded, FunctionCall):
        check_arguments(decoded.arguments, f"input[{index}].arguments")
        return ChatMessage("assistant", None, [ToolCall(decoded.call_id, decoded.name, decoded.arguments)])
    if isinstance(decoded, CustomToolCall):
        arguments = msgspec.json.encode({"input": decoded.input}).decode()
        return ChatMessage("assistant", None, [ToolCall(decoded.call_id, decoded.name, arguments)])
    if isinstance(decoded, FunctionCallOutput | CustomToolCallOutput):
        return ChatMessage(
            "tool", _text(decoded.output, f"input[{index}].output"), tool_call_id=decoded.call_id
        )
    assert isinstance(decoded, InputMessage)
    role = "system" if decoded.role == "developer" else decoded.role
    return ChatMessage(role, _text(decoded.content, f"input[{index}].content"))


def check_arguments(arguments: str, param: str) -> None:
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
