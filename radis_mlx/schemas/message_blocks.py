"""The content blocks of Anthropic Messages requests, named as in Anthropic's reference."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from radis_mlx.generation.types import ImageInput
from radis_mlx.schemas.images import check_media_type

CacheControl = dict[str, Any] | None


class TextBlock(Struct, tag_field="type", tag="text", omit_defaults=True):
    text: str
    cache_control: CacheControl = None


class Base64ImageSource(Struct, tag_field="type", tag="base64"):
    media_type: str
    data: str


class URLImageSource(Struct, tag_field="type", tag="url"):
    url: str


class ImageBlock(Struct, tag_field="type", tag="image"):
    source: Base64ImageSource | URLImageSource
    cache_control: CacheControl = None

    def to_image(self, param: str) -> ImageInput:
        """The image this block sends (checked and decoded later by the HTTP layer)."""
        source = self.source
        if isinstance(source, URLImageSource):
            return ImageInput(source.url, param, strict_type=True)
        kind = check_media_type(source.media_type, f"{param}.media_type")
        return ImageInput(f"data:{kind};base64,{source.data}", param, strict_type=True)


class DocumentBlock(Struct, tag_field="type", tag="document"):
    source: dict[str, Any]
    cache_control: CacheControl = None


class ToolUseBlock(Struct, tag_field="type", tag="tool_use", omit_defaults=True):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl = None


class ToolResultBlock(Struct, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[dict[str, Any]] = ""
    is_error: bool = False
    cache_control: CacheControl = None


class ThinkingBlock(Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag_field="type", tag="redacted_thinking"):
    data: str


ThinkingBlocks = ThinkingBlock | RedactedThinkingBlock
ContentBlock = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlocks
