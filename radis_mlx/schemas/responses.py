"""POST /v1/responses (the OpenAI Responses API) requests, named and ordered as in the OpenAI reference.

Shaped for what Codex sends: reasoning effort and summaries, `include`, `store: false`, prompt_cache_key,
function and custom (freeform, grammar-constrained) tools, and the full history as items every turn.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import ANY_OBJECT, lark_text, schema_grammar
from radis_mlx.generation.tools import check_tools
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationRequest,
    ReasoningOptions,
    ToolDefinition,
)
from radis_mlx.schemas.common import (
    MAX_TOOLS,
    MaxTokens,
    Metadata,
    ReasoningEffort,
    SamplingFields,
    Temperature,
    TopP,
    TtlSeconds,
    User,
    output_grammar,
    with_default_system,
)
from radis_mlx.schemas.response_items import Opener, to_messages

# The reference's includable values. Honored: reasoning.encrypted_content, message.output_text.logprobs;
# the others name outputs of tools this server does not run (or echo inputs): nothing to add.
Includable = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
# What a custom tool's input is, offered to models as a function with one string argument.
_CUSTOM_PARAMETERS = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


class FunctionTool(Struct, tag_field="type", tag="function"):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    parameters: dict[str, Any] | None = None
    # Arguments always match the schema here (constrained decoding); strict only matters to OpenAI.
    strict: bool | None = None
    description: str | None = None

    def to_definition(self, index: int) -> ToolDefinition:
        """The engine's view of this tool."""
        if self.parameters is None:
            return ToolDefinition(self.name, self.description or "")
        return ToolDefinition(self.name, self.description or "", self.parameters)


class GrammarFormat(Struct, tag_field="type", tag="grammar"):
    syntax: Literal["lark", "regex"]
    definition: str


class TextFormat(Struct, tag_field="type", tag="text"):
    pass


class CustomTool(Struct, tag_field="type", tag="custom"):
    """A freeform tool: its input is text, constrained by a Lark or regex grammar when it has one."""

    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    format: TextFormat | GrammarFormat | None = None

    def to_definition(self, index: int) -> ToolDefinition:
        fmt = self.format
        grammar = (
            lark_text(fmt.definition, fmt.syntax, f"tools[{index}].format")
            if isinstance(fmt, GrammarFormat)
            else None
        )
        return ToolDefinition(
            self.name, self.description or "", _CUSTOM_PARAMETERS, custom=True, grammar=grammar
        )


class WebSearchTool(Struct, tag_field="type", tag="web_search", kw_only=True):
    """Accepted and not offered: this server runs no search (the model answers without it)."""

    external_web_access: bool | None = None


class ToolChoiceFunction(Struct, tag_field="type", tag="function"):
    name: str


class ToolChoiceCustom(Struct, tag_field="type", tag="custom"):
    name: str


ToolChoiceOption = Literal["none", "auto", "required"] | ToolChoiceFunction | ToolChoiceCustom


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
    # Accepted (low/medium/high): a local model's length follows its own habits and max_output_tokens.
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Struct, omit_defaults=True):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponseCreateRequest(Struct, kw_only=True):
    model: str
    input: str | list[dict[str, Any]]
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    include: list[Includable] | None = None
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    # Accepted and kept on the response; nothing else is done with them.
    metadata: Metadata | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    # Accepted: the prompt cache is keyed on the tokens themselves, which covers what the key groups.
    prompt_cache_key: str | None = None
    reasoning: ReasoningConfig | None = None
    service_tier: str | None = None
    store: bool = True
    stream: bool = False
    temperature: Temperature | None = None
    text: TextConfig | None = None
    tool_choice: ToolChoiceOption = "auto"
    tools: Annotated[list[FunctionTool | CustomTool | WebSearchTool], Meta(max_length=MAX_TOOLS)] = (
        msgspec.field(default_factory=list)
    )
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    top_p: TopP | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    user: User | None = None
    # Extensions: a grammar over the whole output (llguidance's Lark, llama-server's field), and the idle
    # TTL (LM Studio): seconds this model may stay loaded while idle, from this request on.
    grammar: str | None = None
    ttl: TtlSeconds | None = None

    def input_messages(self, open_sealed: Opener) -> list[ChatMessage]:
        """This request's own input, as chat messages (instructions not included)."""
        return (
            [ChatMessage("user", self.input)]
            if isinstance(self.input, str)
            else to_messages(self.input, open_sealed)
        )

    def includes(self, value: str) -> bool:
        return value in (self.include or [])

    def logprobs(self) -> int | None:
        """Alternatives per output token, when output_text logprobs are asked for."""
        if self.top_logprobs is None and not self.includes("message.output_text.logprobs"):
            return None
        return self.top_logprobs or 0

    def to_generation(
        self, history: list[ChatMessage], defaults: SamplingDefaults, open_sealed: Opener
    ) -> GenerationRequest:
        """The engine's view: instructions, then the earlier turns, then this input."""
        self._refuse_unsupported()
        system = [ChatMessage("system", self.instructions)] if self.instructions else []
        sampling = SamplingFields(temperature=self.temperature, top_p=self.top_p)
        tools = [t.to_definition(i) for i, t in enumerate(self.tools) if not isinstance(t, WebSearchTool)]
        choice = self.tool_choice
        generation = GenerationRequest(
            messages=with_default_system([*system, *history, *self.input_messages(open_sealed)], defaults),
            stop=list(defaults.stop or []),
            max_tokens=self.max_output_tokens or defaults.max_tokens,
            sampling=sampling.to_sampling_params(defaults),
            json_schema=self.json_schema(),
            logprobs=self.logprobs(),
            tools=tools or None,
            tool_choice=FunctionChoice(choice.name)
            if isinstance(choice, ToolChoiceFunction | ToolChoiceCustom)
            else choice,
            parallel_tool_calls=self.parallel_tool_calls,
            reasoning=ReasoningOptions(effort=self.reasoning.effort if self.reasoning else None),
            output_grammar=output_grammar(self.grammar),
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

    def custom_tools(self) -> set[str]:
        """The names of the custom tools: their calls come out as custom_tool_call items."""
        return {t.name for t in self.tools if isinstance(t, CustomTool)}

    def _refuse_unsupported(self) -> None:
        refused = {
            "background": self.background,
            "conversation": self.conversation,
            "truncation": self.truncation == "auto",
        }
        for name, value in refused.items():
            if value:
                raise InvalidRequestError(f"{name} is not supported by this server", param=name)
