"""Chat templates: where a model's comes from, and messages (tool calls included) rendered with it.

The template is read from the model's files, so every engine serving a model sees the same one and
engines/tools.py picks the same tool-call format for it. MLX renders it here with transformers;
llama.cpp renders it in its child with the same messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from radis_mlx.engines.base import ChatMessage, GenerationRequest, ToolDefinition
from radis_mlx.errors import InvalidRequestError
from radis_mlx.gguf_header import gguf_metadata


def read_chat_template(path: Path) -> str | None:
    """The chat template shipped with a model (GGUF metadata, or an MLX folder's files); None if none."""
    try:
        if path.suffix.lower() == ".gguf":
            template = gguf_metadata(path).get("tokenizer.chat_template")
            return template if isinstance(template, str) else None
        if (path / "chat_template.jinja").is_file():
            return (path / "chat_template.jinja").read_text()
        config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError, struct.error):
        return None
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the one transformers renders tools with
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("tool_use", named.get("default"))
    return template if isinstance(template, str) else None


def template_messages(messages: list[ChatMessage], *, object_arguments: bool) -> list[dict[str, Any]]:
    """Messages as chat templates take them; tool-call arguments as parsed objects where asked
    (transformers' templates `tojson` them) or as the JSON text OpenAI sends (llama.cpp parses it)."""
    rendered = []
    for index, message in enumerate(messages):
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": _arguments(call.arguments, index)
                        if object_arguments
                        else call.arguments,
                    },
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
        rendered.append(item)
    return rendered


def _arguments(text: str, index: int) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidRequestError(
            "tool call arguments must be a JSON text", param=f"messages[{index}].tool_calls"
        ) from None


def template_tools(tools: list[ToolDefinition]) -> list[dict[str, Any]]:
    """Tools in the OpenAI shape chat templates iterate over."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def render_tokens(tokenizer: Any, request: GenerationRequest, template: str | None) -> list[int]:
    """A chat request's prompt tokens through an mlx-lm tokenizer (its own template unless given one)."""
    messages = template_messages(request.messages or [], object_arguments=True)
    options: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
    if request.tools:
        options["tools"] = template_tools(request.tools)
    own = tokenizer.chat_template
    if template is not None and template not in (own.values() if isinstance(own, dict) else [own]):
        options["chat_template"] = template  # an override; else transformers picks among the model's own
    try:
        text = tokenizer.apply_chat_template(messages, **options)
    except (TemplateError, TypeError, ValueError) as exc:  # also the template's own raise_exception()
        raise InvalidRequestError(
            f"the chat template rejected these messages: {exc}", param="messages"
        ) from exc
    return list(tokenizer.encode(text + request.assistant_prefix, add_special_tokens=False))
