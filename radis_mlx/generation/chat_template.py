"""Messages and tools as chat templates take them (OpenAI's shapes, tool calls included).

The template itself is read from the model's files (store/templates.py), so every engine serving a
model sees the same one and generation/tools.py picks the same tool-call format for it. MLX renders it
with transformers (engines/mlx/prompt.py); llama.cpp renders it in its child with the same messages.
"""

from __future__ import annotations

import json
from typing import Any

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import ChatMessage, ToolDefinition


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
        if message.reasoning is not None:
            # The key Qwen3, GLM, MiniMax, Kimi and DeepSeek templates read (gpt-oss's `thinking` too).
            item["reasoning_content"] = item["thinking"] = message.reasoning
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
