"""POST /v1/messages (the Anthropic Messages API) requests, named and ordered as in Anthropic's reference.

What coding agents send is accepted as they send it (Claude Code: a billing line in the system prompt,
cache_control everywhere, thinking on every request, system messages between turns, thinking blocks sent
back): the billing line is dropped before templating (its nonce changes every request and would defeat
the prompt cache), cache_control is the prompt cache's business anyway, and thinking maps onto the
model's reasoning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import schema_grammar
from radis_mlx.generation.tools import check_tools
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationRequest,
    ImageInput,
    ReasoningOptions,
    ToolCall,
    ToolDefinition,
    message_with_parts,
)
from radis_mlx.generation.types import ToolChoice as EngineToolChoice
from radis_mlx.schemas.common import (
    MAX_TOOLS,
    BudgetTokens,
    MaxTokens,
    SamplingFields,
    StopList,
    TtlSeconds,
    output_grammar,
    with_default_system,
)
from radis_mlx.schemas.message_blocks import (
    ContentBlock,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ThinkingBlocks,
    ToolResultBlock,
    ToolUseBlock,
)

# Claude Code's first system block: metadata for Anthropic's own servers, with a per-request nonce.
BILLING_LINE = "x-anthropic-billing-header:"


class MessageParam(Struct):
    # "system": Claude Code puts reminders between turns as system messages.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class JsonOutputFormat(Struct):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(Struct):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JsonOutputFormat | None = None

    def json_schema(self) -> dict[str, Any] | None:
        """The schema the output must match (checked enforceable now)."""
        if self.format is None:
            return None
        schema_grammar(self.format.schema, param="output_config.format")
        return self.format.schema


class ThinkingConfig(Struct, kw_only=True):
    type: Literal["enabled", "adaptive", "disabled"]
    budget_tokens: BudgetTokens | None = None
    display: str | None = None  # "summarized" | "omitted": omitted streams the signature only

    def options(self, effort: str | None, max_tokens: int | None) -> ReasoningOptions:
        """The model's reasoning switched on (with a budget) or off; effort from output_config."""
        if self.type == "disabled":
            return ReasoningOptions(enabled=False)
        budget = self.budget_tokens if self.type == "enabled" else None
        if budget is not None and max_tokens is not None and budget > max_tokens:
            raise InvalidRequestError(
                f"thinking.budget_tokens ({budget}) must not exceed max_tokens ({max_tokens})",
                param="thinking.budget_tokens",
            )
        return ReasoningOptions(effort=effort, enabled=True, budget=budget)


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
    thinking: ThinkingConfig | None = None
    tool_choice: ToolChoice | None = None
    tools: Annotated[list[Tool], Meta(max_length=MAX_TOOLS)] | None = None
    output_config: OutputConfig | None = None

    def chat_messages(self) -> list[ChatMessage]:
        """system, then the turns, as the engine's chat messages; refuses what we would ignore."""
        if self.messages[-1].role == "assistant":
            # Anthropic continues a final assistant turn (prefill); chat templates start a new one.
            raise InvalidRequestError(
                "a final assistant message (prefill) is not supported",
                param=f"messages.{len(self.messages) - 1}",
            )
        system = [system_text(self.system)]
        turns: list[ChatMessage] = []
        for index, message in enumerate(self.messages):
            if message.role == "system" and not turns:  # before the first turn: part of the system prompt
                system.append(_text(message.content, f"messages.{index}.content"))
            elif message.role == "system":  # between turns: as the user's (templates want one system message)
                turns.append(ChatMessage("user", _text(message.content, f"messages.{index}.content")))
            else:
                turns += _turn(message, index)
        prompt = "\n".join(part for part in system if part)
        return [ChatMessage("system", prompt), *turns] if prompt else turns

    def thinking_blocks(self) -> list[tuple[str, ThinkingBlock]]:
        """Every thinking block sent back, with the field it is at (its signature must be ours)."""
        return [
            (f"messages.{i}.content.{j}", block)
            for i, message in enumerate(self.messages)
            if not isinstance(message.content, str)
            for j, block in enumerate(message.content)
            if isinstance(block, ThinkingBlock)
        ]

    def generation(self, **fields: Any) -> GenerationRequest:
        """The engine's view of the conversation and its tools (and any further fields)."""
        choice = self.tool_choice
        effort = self.output_config.effort if self.output_config else None
        max_tokens = fields.get("max_tokens")
        reasoning = (
            self.thinking.options(effort, max_tokens) if self.thinking else ReasoningOptions(effort=effort)
        )
        generation = GenerationRequest(
            messages=self.chat_messages(),
            reasoning=reasoning,
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
    # Accepted and not used (metadata.user_id is for Anthropic's abuse detection; context_management edits
    # Anthropic's server-side context, which the client resends anyway).
    metadata: Annotated[dict[Annotated[str, Meta(max_length=64)], Any], Meta(max_length=16)] | None = None
    context_management: dict[str, Any] | None = None
    service_tier: str | None = None
    stop_sequences: StopList | None = None
    stream: bool = False
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    # Extensions: a grammar over the whole output (llguidance's Lark, llama-server's field), and the idle
    # TTL (LM Studio): seconds this model may stay loaded while idle, from this request on.
    grammar: str | None = None
    ttl: TtlSeconds | None = None

    def to_generation(self, defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view of this request."""
        sampling = SamplingFields(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        generation = self.generation(
            max_tokens=self.max_tokens,
            stop=list(self.stop_sequences or defaults.stop or []),
            sampling=sampling.to_sampling_params(defaults),
            json_schema=self.output_config.json_schema() if self.output_config else None,
            output_grammar=output_grammar(self.grammar),
        )
        generation.messages = with_default_system(generation.messages or [], defaults)
        return generation


def system_text(system: str | list[TextBlock] | None) -> str:
    """The system prompt without Claude Code's billing line (a per-request nonce, never an instruction)."""
    blocks = [system] if isinstance(system, str) else [b.text for b in system or []]
    kept = [
        "\n".join(line for line in block.split("\n") if not line.startswith(BILLING_LINE)) for block in blocks
    ]
    return "\n".join(block for block in kept if block.strip())


def _turn(message: MessageParam, index: int) -> list[ChatMessage]:
    """One Anthropic turn as chat messages: tool results become tool messages, tool_use blocks calls,
    thinking blocks the assistant turn's reasoning."""
    if isinstance(message.content, str):
        return [ChatMessage(message.role, message.content)]
    param = f"messages.{index}.content"
    thoughts = [b.thinking for b in message.content if isinstance(b, ThinkingBlock)]
    reasoning = "\n".join(thoughts) if thoughts else None
    results = [
        _tool_result(b, f"{param}.{j}")
        for j, b in enumerate(message.content)
        if isinstance(b, ToolResultBlock)
    ]
    calls = [
        ToolCall(b.id, b.name, msgspec.json.encode(b.input).decode())
        for b in message.content
        if isinstance(b, ToolUseBlock)
    ]
    skipped = ToolResultBlock | ToolUseBlock | ThinkingBlocks
    kept = [(f"{param}.{j}", b) for j, b in enumerate(message.content) if not isinstance(b, skipped)]
    if message.role == "user" and any(isinstance(b, ImageBlock) for _, b in kept):
        return [*results, message_with_parts("user", _parts(kept, param))]
    text = _text([b for _, b in kept], param)
    if calls:
        return [*results, ChatMessage(message.role, text or None, calls, reasoning=reasoning)]
    if text or not results:
        return [*results, ChatMessage(message.role, text, reasoning=reasoning)]
    return results


def _tool_result(block: ToolResultBlock, param: str) -> ChatMessage:
    """A tool_result as a tool message; its images (a screenshot a tool read) kept in order."""
    if isinstance(block.content, str):
        return ChatMessage("tool", block.content, tool_call_id=block.tool_use_id)
    blocks = [(f"{param}.content.{j}", _block(b, f"{param}.content")) for j, b in enumerate(block.content)]
    message = message_with_parts("tool", _parts(blocks, f"{param}.content"))
    message.tool_call_id = block.tool_use_id
    return message


def _parts(blocks: list[tuple[str, Any]], param: str) -> list[str | ImageInput]:
    return [
        b.to_image(f"{at}.source") if isinstance(b, ImageBlock) else _text([b], param) for at, b in blocks
    ]


def _block(block: Any, param: str) -> Any:
    if not isinstance(block, dict):
        return block
    try:
        return msgspec.convert(block, ContentBlock)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(str(exc), param=param) from None


def _text(content: str | list[Any], param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for item in content:
        block = _block(item, param)  # a tool_result's own content blocks are dicts
        if not isinstance(block, TextBlock):
            kind = type(block).__struct_config__.tag
            raise InvalidRequestError(f"content blocks of type '{kind}' are not supported", param=param)
        texts.append(block.text)
    return "\n".join(texts)
