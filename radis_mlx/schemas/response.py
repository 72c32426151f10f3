"""The Response object, its output items and its stream events, as named in the OpenAI reference."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from radis_mlx.generation.types import TokenLogprob
from radis_mlx.schemas.response_items import (
    CustomToolCall,
    FunctionCall,
    OutputText,
    ReasoningItem,
    SummaryText,
)
from radis_mlx.schemas.responses import (
    CustomTool,
    FunctionTool,
    ReasoningConfig,
    TextConfig,
    ToolChoiceOption,
    WebSearchTool,
)


class OutputMessage(Struct, tag_field="type", tag="message"):
    id: str
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


OutputItem = ReasoningItem | OutputMessage | FunctionCall | CustomToolCall


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int]


class Logprob(Struct):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]

    @classmethod
    def of(cls, entries: list[TokenLogprob] | None) -> list[Logprob]:
        return [
            cls(
                e.token,
                e.logprob,
                list(e.bytes),
                [TopLogprob(t.token, t.logprob, list(t.bytes)) for t in e.top],
            )
            for e in entries or []
        ]


class InputTokensDetails(Struct):
    cached_tokens: int = 0


class OutputTokensDetails(Struct):
    reasoning_tokens: int = 0


class ResponseUsage(Struct):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int

    @classmethod
    def of(
        cls, input_tokens: int, output_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
    ) -> ResponseUsage:
        cached, total = InputTokensDetails(cached_tokens), input_tokens + output_tokens
        return cls(input_tokens, cached, output_tokens, OutputTokensDetails(reasoning_tokens), total)


class IncompleteDetails(Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(Struct, kw_only=True):
    id: str
    created_at: int
    error: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, str] | None = None
    model: str
    object: Literal["response"] = "response"
    output: list[OutputItem]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningConfig | None = None
    status: Literal["completed", "failed", "in_progress", "incomplete"] = "completed"
    store: bool = True
    temperature: float | None = None
    text: TextConfig | None = None
    tool_choice: ToolChoiceOption = "auto"
    tools: list[FunctionTool | CustomTool | WebSearchTool] = msgspec.field(default_factory=list)
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None


class DeletedResponse(Struct):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class StreamEvent(Struct, kw_only=True):
    """One server-sent Responses event: `type` plus the fields of that event type."""

    type: str
    sequence_number: int
    response: Response | UnsetType = UNSET
    output_index: int | UnsetType = UNSET
    item: OutputItem | UnsetType = UNSET
    item_id: str | UnsetType = UNSET
    content_index: int | UnsetType = UNSET
    summary_index: int | UnsetType = UNSET
    part: OutputText | SummaryText | UnsetType = UNSET
    delta: str | UnsetType = UNSET
    text: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET
    input: str | UnsetType = UNSET
    logprobs: list[Logprob] | UnsetType = UNSET
    # type "error"
    code: str | UnsetType | None = UNSET
    message: str | UnsetType = UNSET
    param: str | UnsetType | None = UNSET
