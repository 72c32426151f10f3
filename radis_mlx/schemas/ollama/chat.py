"""POST /api/chat and /api/generate, as Ollama's ChatRequest/GenerateRequest and their responses.

Both stream NDJSON by default (`stream` absent is true). A reply's last object carries `done: true`,
`done_reason` and the counts and durations (integer nanoseconds); tool-call arguments are JSON objects.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.tools import check_tools
from radis_mlx.generation.types import (
    ChatMessage,
    GenerationRequest,
    ImageInput,
    ToolCall,
    ToolDefinition,
    message_with_parts,
)
from radis_mlx.schemas.common import with_default_system
from radis_mlx.schemas.ollama.common import (
    KeepAlive,
    Options,
    ThinkLevel,
    format_schema,
    keep_alive_seconds,
    reasoning_options,
)

# Ollama's logprob entries are the Responses API's: token, logprob, bytes, top_logprobs.
from radis_mlx.schemas.response import Logprob

ROLES = ("system", "user", "assistant", "tool")
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]


def done_reason(finish_reason: str) -> str:
    """Our finish reason in Ollama's words: "length", else "stop" (a reply ending in tool calls stopped)."""
    return "length" if finish_reason == "length" else "stop"


class ToolCallFunction(Struct, kw_only=True):
    name: str
    arguments: dict[str, Any] = {}
    index: int | None = None


class MessageToolCall(Struct, kw_only=True):
    function: ToolCallFunction
    id: str | None = None


class OllamaMessage(Struct, kw_only=True):
    role: str
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class FunctionSpec(Struct, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str = ""
    parameters: dict[str, Any] | None = None


class OllamaTool(Struct, kw_only=True):
    function: FunctionSpec
    type: Literal["function"] = "function"

    def to_definition(self) -> ToolDefinition:
        f = self.function
        if f.parameters is None:
            return ToolDefinition(f.name, f.description)
        return ToolDefinition(f.name, f.description, f.parameters)


class GenerationFields(Struct, kw_only=True):
    """What /api/chat and /api/generate share."""

    model: str = ""
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: KeepAlive | None = None
    think: ThinkLevel | None = None
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    # Accepted, not used: prompts longer than the context are a 400 here, never cut or shifted.
    truncate: bool | None = None
    shift: bool | None = None

    def keep_alive_seconds(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)

    def _generation(self, defaults: SamplingDefaults, **fields: Any) -> GenerationRequest:
        options = self.options or Options()
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs set to true", param="top_logprobs")
        return GenerationRequest(
            max_tokens=options.max_tokens(defaults),
            stop=list(options.stop or defaults.stop or []),  # the model's own (an Ollama PARAMETER stop)
            sampling=options.sampling(defaults),
            json_schema=format_schema(self.format),
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            reasoning=reasoning_options(self.think),
            **fields,
        )

    @property
    def thinks(self) -> bool:
        """Whether the request asks for reasoning (a model without any then refuses it, as Ollama)."""
        return bool(self.think)


class ChatRequest(GenerationFields, kw_only=True):
    messages: list[OllamaMessage] | None = None
    tools: Annotated[list[OllamaTool], Meta(max_length=128)] | None = None

    def to_generation(self, defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view; tool_choice is always auto, as Ollama has no other."""
        tools = [t.to_definition() for t in self.tools or []] or None  # clients send `tools: []`
        if tools and self.format:
            raise InvalidRequestError("format cannot be combined with tools", param="format")
        messages = with_default_system(chat_messages(self.messages or []), defaults)
        generation = self._generation(defaults, messages=messages, tools=tools)
        check_tools(generation)
        return generation


class GenerateRequest(GenerationFields, kw_only=True):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None  # token ids of an earlier reply: never handed out, so refused
    raw: bool = False
    images: list[str] | None = None

    def to_generation(self, defaults: SamplingDefaults) -> GenerationRequest:
        """A one-turn chat through the model's template, or the raw prompt (`raw`, or with a `suffix`)."""
        if self.template:
            raise InvalidRequestError(
                "template overrides (Go templates) are not supported; send raw: true with your own prompt",
                param="template",
            )
        if self.context:
            raise InvalidRequestError(
                "context (an earlier reply's token ids) is not supported; send the conversation to /api/chat",
                param="context",
            )
        if self.raw and self.system:
            raise InvalidRequestError("raw mode does not support template, system, or context", param="raw")
        if self.raw or self.suffix:
            if self.images:  # a raw prompt has no place for them
                raise InvalidRequestError("images need the model's template: send raw: false", param="images")
            return self._generation(defaults, prompt=self.prompt)
        system = self.system or defaults.system  # `system` replaces the model's own, as on Ollama
        messages = [ChatMessage("system", system)] if system else []
        user = _with_images("user", self.prompt, self.images, "images")
        return self._generation(defaults, messages=[*messages, user])


def chat_messages(messages: list[OllamaMessage]) -> list[ChatMessage]:
    """Ollama's messages as ours: calls get ids where they have none, results find their call by name."""
    converted: list[ChatMessage] = []
    calls: list[ToolCall] = []  # every call so far, to find the one a result answers
    for index, message in enumerate(messages):
        role = message.role.lower()
        if role not in ROLES:
            raise InvalidRequestError(
                f"role must be one of {', '.join(ROLES)}, not '{message.role}'",
                param=f"messages[{index}].role",
            )
        if message.images and role != "user":
            raise InvalidRequestError(
                "only user messages may carry images", param=f"messages[{index}].images"
            )
        content = message.content or ""
        if role == "assistant" and message.tool_calls:
            made = [
                ToolCall(c.id or f"call_{index}_{i}", c.function.name, json.dumps(c.function.arguments))
                for i, c in enumerate(message.tool_calls)
            ]
            calls += made
            converted.append(
                ChatMessage("assistant", content or None, tool_calls=made, reasoning=message.thinking)
            )
        elif role == "tool":
            converted.append(ChatMessage("tool", content, tool_call_id=_answered(message, calls)))
        elif message.images:
            converted.append(_with_images(role, content, message.images, f"messages[{index}].images"))
        else:
            converted.append(
                ChatMessage(role, content, reasoning=message.thinking if role == "assistant" else None)
            )
    return converted


def _with_images(role: str, text: str, images: list[str] | None, param: str) -> ChatMessage:
    """A message with Ollama's images (bare base64; their bytes tell the format) before its text, as
    Ollama's templates place them. They are counted and decoded with every other API's (api/images.py)."""
    if not images:
        return ChatMessage(role, text)
    parts: list[str | ImageInput] = [
        ImageInput(
            image if image[:5].lower() == "data:" else f"data:image/png;base64,{image}", f"{param}[{i}]"
        )
        for i, image in enumerate(images)
    ]
    return message_with_parts(role, [*parts, text] if text else parts)


def _answered(message: OllamaMessage, calls: list[ToolCall]) -> str | None:
    if message.tool_call_id:
        return message.tool_call_id
    named = [c for c in calls if c.name == message.tool_name]
    return named[-1].id if named else (calls[-1].id if calls else None)


# Responses


class ResponseFunction(Struct):
    index: int
    name: str
    arguments: dict[str, Any]


class ResponseToolCall(Struct):
    id: str
    function: ResponseFunction

    @classmethod
    def of(cls, call: ToolCall, index: int) -> ResponseToolCall:
        """A call with its arguments as a JSON object (the official clients reject a JSON text)."""
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            arguments = {}
        return cls(
            call.id, ResponseFunction(index, call.name, arguments if isinstance(arguments, dict) else {})
        )


class ResponseMessage(Struct, omit_defaults=True):
    role: str
    content: str
    thinking: str | None = None
    tool_calls: list[ResponseToolCall] | None = None


class ChatResponse(Struct, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    message: ResponseMessage
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    logprobs: list[Logprob] | None = None


class GenerateResponse(Struct, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    logprobs: list[Logprob] | None = None
