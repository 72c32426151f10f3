"""engines/tools.py: format choice, prompts and constraints, and the parsed stream, on a scripted engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator

import jsonschema_rs
import pytest

from radis_mlx.engines.base import Engine, EngineInfo
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.tools import call_schema, check_tools, native_format, with_tools
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationChunk,
    GenerationRequest,
    ToolCall,
    ToolDefinition,
)
from tests.support.e2e import TOOL_TEMPLATE

NATIVE = TOOL_TEMPLATE
PLAIN = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
WEATHER = ToolDefinition(
    "get_weather",
    "Current weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolDefinition("get_time", "Current time")
ASK = [ChatMessage("user", "Weather in Paris?")]


class ScriptedEngine(Engine):
    """Replies with fixed text pieces and keeps the request it was given."""

    def __init__(self, template: str, pieces: list[str], finish: str = "stop") -> None:
        self.info = EngineInfo(name="scripted", context_length=4096)
        self.chat_template = template
        self.pieces, self.finish = pieces, finish
        self.seen: GenerationRequest | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.seen = request
        for piece in self.pieces[:-1]:
            yield GenerationChunk(piece)
        yield GenerationChunk(self.pieces[-1], self.finish, 10, len(self.pieces))


def run(engine: Engine, **fields) -> list[GenerationChunk]:
    request = GenerationRequest(messages=fields.pop("messages", ASK), tools=[WEATHER, TIME], **fields)

    async def chunks() -> list[GenerationChunk]:
        return [chunk async for chunk in with_tools(engine.generate, engine.chat_template, request)]

    return asyncio.run(chunks())


def calls_of(chunks: list[GenerationChunk]) -> list[ToolCall]:
    return [call for chunk in chunks for call in chunk.tool_calls or []]


def text_of(chunks: list[GenerationChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


def test_the_format_comes_from_the_template():
    native = native_format(NATIVE)
    assert native is not None and (native.family, native.start, native.end) == (
        "json_tools",
        "<tool_call>",
        "</tool_call>",
    )
    assert native_format(PLAIN) is None
    assert native_format(None) is None


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize("cut", range(0, len("Let me look. " + CALL) + 1, 3))
def test_native_calls_are_parsed_wherever_the_stream_splits(cut):
    reply = "Let me look. " + CALL
    engine = ScriptedEngine(NATIVE, [reply[:cut], reply[cut:]])
    chunks = run(engine)
    assert engine.seen is not None and engine.seen.tools == [WEATHER, TIME]  # rendered by the template
    assert text_of(chunks) == "Let me look."  # the space before a call is no content
    [call] = calls_of(chunks)
    assert call.id.startswith("call_") and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert chunks[-1].finish_reason == "tool_calls"
    assert (chunks[-1].prompt_tokens, chunks[-1].completion_tokens) == (10, 2)


def test_native_text_without_calls_streams_unchanged():
    chunks = run(ScriptedEngine(NATIVE, ["It is ", "sunny <tool", "s> here."]))
    assert text_of(chunks) == "It is sunny <tools> here."
    assert not calls_of(chunks) and chunks[-1].finish_reason == "stop"
    assert chunks[0].text == "It is"  # text streams; a possible marker and trailing space wait


def test_parallel_tool_calls_false_keeps_the_first_call():
    second = CALL.replace("get_weather", "get_time").replace('{"city": "Paris"}', "{}")
    reply = [CALL + "\n" + second]
    assert [c.name for c in calls_of(run(ScriptedEngine(NATIVE, reply)))] == ["get_weather", "get_time"]
    assert [c.name for c in calls_of(run(ScriptedEngine(NATIVE, reply), parallel_tool_calls=False))] == [
        "get_weather"
    ]


def test_a_broken_native_call_is_kept_as_text():
    chunks = run(ScriptedEngine(NATIVE, ["<tool_call>\nnot json\n</tool_call>"]))
    assert text_of(chunks) == "<tool_call>\nnot json\n</tool_call>"
    assert not calls_of(chunks) and chunks[-1].finish_reason == "stop"


def test_native_forced_call_starts_inside_the_marker_and_constrains_the_body():
    engine = ScriptedEngine(NATIVE, ['{"name": "get_weather", ', '"arguments": {"city": "Oslo"}}'])
    chunks = run(engine, tool_choice=FunctionChoice("get_weather"))
    assert engine.seen is not None and engine.seen.assistant_prefix == "<tool_call>\n"
    schema = engine.seen.json_schema
    jsonschema_rs.validate(schema, {"name": "get_weather", "arguments": {"city": "Oslo"}})
    assert not jsonschema_rs.is_valid(schema, {"name": "get_time", "arguments": {}})
    [call] = calls_of(chunks)
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})
    assert text_of(chunks) == "" and chunks[-1].finish_reason == "tool_calls"


def test_generic_auto_offers_tools_in_a_system_message_and_allows_text():
    engine = ScriptedEngine(PLAIN, ['{"response": ', '"Sunny."}'])
    chunks = run(engine)
    seen = engine.seen
    assert seen is not None and seen.tools is None and seen.messages is not None
    assert seen.messages[0].role == "system" and "get_weather" in (seen.messages[0].content or "")
    assert jsonschema_rs.is_valid(seen.json_schema, {"response": "hi"})
    assert jsonschema_rs.is_valid(seen.json_schema, {"tool_calls": [{"name": "get_time", "arguments": {}}]})
    assert text_of(chunks) == "Sunny." and chunks[-1].finish_reason == "stop"


def test_generic_calls_are_parsed():
    reply = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}'
    chunks = run(ScriptedEngine(PLAIN, [reply]), tool_choice="required")
    [call] = calls_of(chunks)
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Rome"})
    assert text_of(chunks) == "" and chunks[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("fields", "valid", "invalid"),
    [
        ({"tool_choice": "required"}, [{"name": "get_time", "arguments": {}}], None),
        ({"tool_choice": FunctionChoice("get_time")}, [{"name": "get_time", "arguments": {}}], "get_weather"),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            [{"name": "get_time", "arguments": {}}],
            "two calls",
        ),
    ],
)
def test_generic_schema_follows_tool_choice(fields, valid, invalid):
    engine = ScriptedEngine(PLAIN, ['{"tool_calls": [{"name": "get_time", "arguments": {}}]}'])
    run(engine, **fields)
    schema = engine.seen.json_schema if engine.seen else None
    assert jsonschema_rs.is_valid(schema, {"tool_calls": valid})
    assert not jsonschema_rs.is_valid(schema, {"response": "text"})  # none of these allows text
    if invalid == "get_weather":
        assert not jsonschema_rs.is_valid(
            schema, {"tool_calls": [{"name": "get_weather", "arguments": {"city": "x"}}]}
        )
    if invalid == "two calls":
        assert not jsonschema_rs.is_valid(schema, {"tool_calls": valid * 2})


def test_a_reply_cut_short_stays_text_with_finish_length():
    chunks = run(ScriptedEngine(PLAIN, ['{"tool_calls": [{"na'], finish="length"))
    assert text_of(chunks) == '{"tool_calls": [{"na' and chunks[-1].finish_reason == "length"
    assert not calls_of(chunks)


def test_tool_choice_none_sends_no_tools_and_parses_nothing():
    engine = ScriptedEngine(NATIVE, [CALL])
    chunks = run(engine, tool_choice="none")
    assert engine.seen is not None and engine.seen.tools is None and engine.seen.json_schema is None
    assert text_of(chunks) == CALL and chunks[-1].finish_reason == "stop"


HISTORY = [
    *ASK,
    ChatMessage("assistant", None, tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Paris"}')]),
    ChatMessage("tool", "22 C", tool_call_id="call_1"),
]


def test_generic_history_becomes_text_for_templates_without_tools():
    engine = ScriptedEngine(PLAIN, ['{"response": "22 C."}'])
    run(engine, messages=HISTORY)
    assert engine.seen is not None and engine.seen.messages is not None
    _, _, assistant, result = engine.seen.messages
    assert json.loads(assistant.content or "") == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    }
    assert result.role == "user"
    assert json.loads(result.content or "") == {"tool_response": {"name": "get_weather", "content": "22 C"}}


def test_native_history_goes_to_the_template_as_is():
    engine = ScriptedEngine(NATIVE, ["It is 22 C."])
    run(engine, messages=HISTORY)
    assert engine.seen is not None and engine.seen.messages == HISTORY


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": FunctionChoice("nope")}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1]"),
        (
            {"tools": [ToolDefinition("f", "", {"type": "string", "format": "nope"})]},
            "tools[0].function.parameters",
        ),
        ({"tools": []}, "tools"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
        ({"json_schema": {"type": "object"}}, "response_format"),
    ],
)
def test_bad_tools_are_request_errors_naming_the_field(fields, param):
    request = GenerationRequest(messages=ASK, **{"tools": [WEATHER], **fields})
    with pytest.raises(InvalidRequestError) as info:
        check_tools(request)
    assert info.value.param == param


def test_generic_instructions_join_the_callers_system_message():
    engine = ScriptedEngine(PLAIN, ['{"response": "ok"}'])
    run(engine, messages=[ChatMessage("system", "Be brief."), *ASK])
    assert engine.seen is not None and engine.seen.messages is not None
    system, user = engine.seen.messages
    assert system.role == "system" and (system.content or "").startswith("Be brief.\n\n")
    assert "get_weather" in (system.content or "") and user == ASK[0]


def test_a_generic_text_reply_streams_as_it_is_decoded():
    pieces = ['{"response": "Hel', 'lo \\"wor', 'ld\\" \\u00e9\\ud83d', '\\ude00!"', "}"]
    chunks = run(ScriptedEngine(PLAIN, pieces))
    assert [c.text for c in chunks] == ["Hel", 'lo "wor', 'ld" é', "😀!", ""]
    assert text_of(chunks) == json.loads("".join(pieces))["response"]
    assert chunks[-1].finish_reason == "stop"


def test_a_generic_text_reply_cut_short_keeps_the_decoded_text():
    chunks = run(ScriptedEngine(PLAIN, ['{"response": "Sunny', " and war"], finish="length"))
    assert text_of(chunks) == "Sunny and war" and chunks[-1].finish_reason == "length"


def test_call_arguments_are_closed_to_the_declared_ones_unless_the_schema_says_otherwise():
    closed = call_schema(WEATHER)["properties"]["arguments"]
    assert not jsonschema_rs.is_valid(closed, {"city": "Oslo", "extra": 1})
    open_schema = {"type": "object", "properties": {}, "additionalProperties": True}
    assert call_schema(ToolDefinition("f", "", open_schema))["properties"]["arguments"] == open_schema
    undeclared = {"type": "object", "properties": {}, "required": ["x"]}
    assert call_schema(ToolDefinition("f", "", undeclared))["properties"]["arguments"] == undeclared


@pytest.mark.parametrize("template", [NATIVE, PLAIN])
def test_arguments_stream_as_deltas_that_join_into_the_finished_call(template):
    if template == NATIVE:
        call = '{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}'
        reply = f"<tool_call>\n{call}\n</tool_call>"
        choice = "auto"
    else:
        reply = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}]}'
        choice = "required"
    rng = random.Random(5)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(reply)), 12))
        pieces = [reply[a:b] for a, b in itertools.pairwise([0, *cuts, len(reply)])]
        chunks = run(ScriptedEngine(template, pieces), tool_choice=choice)
        deltas = [d for c in chunks for d in c.tool_call_deltas or []]
        (call,) = calls_of(chunks)
        assert deltas and deltas[0].name == "get_weather" and {d.id for d in deltas} == {call.id}
        assert "".join(d.arguments for d in deltas) == call.arguments == '{"city": "Paris", "days": [1, 2]}'
        arrived = [
            i
            for i, c in enumerate(chunks)
            if c.tool_call_deltas and any(d.arguments for d in c.tool_call_deltas)
        ]
        assert arrived[0] < len(chunks) - 1 or len(pieces) < 3  # before the call completed
