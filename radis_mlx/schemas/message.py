"""The Anthropic Message object, its usage and its stream events, named as in Anthropic's reference."""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, Struct, UnsetType

from radis_mlx.schemas.errors import AnthropicErrorDetail
from radis_mlx.schemas.messages import TextBlock, ThinkingBlock, ToolUseBlock


class Usage(Struct):
    """Anthropic's meaning: input_tokens + cache_creation_input_tokens + cache_read_input_tokens is the
    whole prompt; input_tokens are the ones computed afresh."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, output_tokens: int, cached_tokens: int, scale: float = 1.0) -> Usage:
        """The prompt's tokens split into fresh and cached ones; `scale` (opt-in, api/anthropic) maps the
        model's window onto the one a client assumes."""
        fresh = max(prompt_tokens - cached_tokens, 0)
        return cls(round(fresh * scale), round(output_tokens * scale), 0, round(cached_tokens * scale))


AssistantBlock = ThinkingBlock | TextBlock | ToolUseBlock


class Message(Struct, kw_only=True):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[AssistantBlock]
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
    thinking: str | UnsetType = UNSET
    signature: str | UnsetType = UNSET
    partial_json: str | UnsetType = UNSET
    stop_reason: str | UnsetType = UNSET
    stop_sequence: str | UnsetType | None = UNSET


class DeltaUsage(Struct):
    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class StreamEvent(Struct, omit_defaults=True):
    """One server-sent Messages event: `type` plus the fields of that event type."""

    type: str
    message: Message | UnsetType = UNSET
    index: int | UnsetType = UNSET
    content_block: AssistantBlock | UnsetType = UNSET
    delta: Delta | UnsetType = UNSET
    usage: DeltaUsage | UnsetType = UNSET
    error: AnthropicErrorDetail | UnsetType = UNSET
