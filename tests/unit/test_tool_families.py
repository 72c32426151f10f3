"""Each model family's real tool-call text, parsed by mlx-lm's parser for it wherever the stream splits.

The text is what the family's models write (from their chat templates and model cards); the split points
are random, so markers arrive in pieces. Calls come out named, with JSON arguments; text around them stays.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
from collections.abc import AsyncIterator

import pytest

from radis_mlx.generation.tool_output import ToolFormat, parse_native
from radis_mlx.generation.types import GenerationChunk, GenerationRequest, ToolDefinition

WEATHER = ToolDefinition(
    "get_weather", "Current weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
FAMILIES = {
    "json_tools": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "qwen3_coder": (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
    ),
    "glm47": "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
    "minimax_m2": (
        '<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    ),
    "mistral": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
    "pythonic": '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>',
    "kimi_k2": (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
        '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>'
    ),
}


def fmt(family: str) -> ToolFormat:
    module = importlib.import_module(f"mlx_lm.tool_parsers.{family}")
    return ToolFormat(family, module.parse_tool_call, module.tool_call_start, module.tool_call_end)


async def scripted(pieces: list[str]) -> AsyncIterator[GenerationChunk]:
    for piece in pieces[:-1]:
        yield GenerationChunk(piece, tokens=1)
    yield GenerationChunk(pieces[-1], "stop", 10, len(pieces), tokens=1)


def parse(family: str, text: str, seed: int) -> tuple[str, list, str | None]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(8, len(text) - 1)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    request = GenerationRequest(messages=[], tools=[WEATHER])

    async def run() -> list[GenerationChunk]:
        stream = parse_native(scripted(pieces), fmt(family), request, json_body=family == "json_tools")
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    calls = [call for chunk in chunks for call in chunk.tool_calls or []]
    return "".join(chunk.text for chunk in chunks), calls, chunks[-1].finish_reason


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_familys_calls_are_parsed_wherever_the_stream_splits(family):
    text = "Let me check. " + FAMILIES[family]
    for seed in range(25):
        content, calls, finish = parse(family, text, seed)
        assert content == "Let me check."
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
        assert finish == "tool_calls"


def test_the_families_are_picked_from_their_templates():
    from radis_mlx.generation.tools import native_format

    assert native_format("{{ '<tool_call>\\n<function=' }}{% if tools %}{% endif %}").family == "qwen3_coder"
    assert native_format("{{ '<arg_key>' }}{% if tools %}{% endif %}").family == "glm47"
    assert native_format("{{ '[TOOL_CALLS]' }}{% if tools %}{% endif %}").family == "mistral"
    assert native_format("{{ 'plain' }}") is None
