"""Tool calling end to end, on both engines and both prompt formats.

smollm2-<engine>: the starter's own template knows no tools (the generic format: tools in a system
message, the reply constrained to JSON). smollm2-tools-<engine>: the same model with a Qwen2.5-style
template that renders tools and `<tool_call>` tags (the native format, parsed by mlx-lm's parser).
"""

from __future__ import annotations

import json

import jsonschema_rs
import openai
import pytest

from tests.support.e2e import ENGINES
from tests.support.errors import error_of

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 16}},
    "required": ["city"],
    "additionalProperties": False,
}
NOTHING = {"type": "object", "properties": {}, "additionalProperties": False}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "The weather in a city", "parameters": CITY},
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "The time now", "parameters": NOTHING},
    },
]
SCHEMAS = {"get_weather": CITY, "get_time": NOTHING}
ASK = [{"role": "user", "content": "What is the weather like in Paris?"}]
GET_TIME = {"type": "function", "function": {"name": "get_time"}}
MODELS = [f"smollm2-{engine}" for engine in ENGINES] + [f"smollm2-tools-{engine}" for engine in ENGINES]


@pytest.fixture(params=MODELS)
def any_model(request) -> str:
    return request.param


def ask(client, model, messages=ASK, **kwargs):
    options = {"tools": TOOLS, "temperature": 0, "max_tokens": 48, **kwargs}
    return client.chat.completions.create(model=model, messages=messages, **options)


def assert_valid_call(call) -> None:
    assert call.id.startswith("call_") and call.type == "function"
    jsonschema_rs.validate(SCHEMAS[call.function.name], json.loads(call.function.arguments))


def test_required_makes_one_valid_call(client, any_model):
    choice = ask(client, any_model, tool_choice="required", parallel_tool_calls=False).choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert_valid_call(call)


def test_a_named_function_is_the_one_called(client, any_model):
    choice = ask(client, any_model, tool_choice=GET_TIME).choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    assert [c.function.name for c in choice.message.tool_calls] == ["get_time"]
    assert_valid_call(choice.message.tool_calls[0])


def test_stream_helper_reassembles_the_non_streamed_calls(client, any_model):
    options = {"tools": TOOLS, "tool_choice": "required", "temperature": 0, "max_tokens": 48}
    plain = client.chat.completions.create(model=any_model, messages=ASK, **options).choices[0]
    with client.chat.completions.stream(model=any_model, messages=ASK, **options) as stream:
        streamed = stream.get_final_completion().choices[0]
    assert streamed.finish_reason == plain.finish_reason == "tool_calls"
    assert streamed.message.content == plain.message.content
    assert [(c.type, c.function.name, c.function.arguments) for c in streamed.message.tool_calls] == [
        (c.type, c.function.name, c.function.arguments) for c in plain.message.tool_calls
    ]
    assert all(c.id.startswith("call_") for c in streamed.message.tool_calls)


def test_auto_is_text_or_valid_calls(client, model):
    choice = ask(client, model, tool_choice="auto").choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        for call in choice.message.tool_calls:
            assert_valid_call(call)
    else:
        assert choice.finish_reason in ("stop", "length") and isinstance(choice.message.content, str)


def test_auto_streams_exactly_the_non_streamed_reply(client, model):
    # Generic format: a text reply streams as its JSON string is decoded, a call's arguments as they
    # are generated (either way, or cut short as text, the streamed reply is the non-streamed one).
    options = {"tools": TOOLS, "temperature": 0, "max_tokens": 40}
    prompt = [{"role": "user", "content": "Say hello."}]
    plain = client.chat.completions.create(model=model, messages=prompt, **options).choices[0]
    # Not the SDK's stream helper: it raises on finish_reason "length", which a text reply may reach.
    chunks = [
        c.choices[0]
        for c in client.chat.completions.create(model=model, messages=prompt, stream=True, **options)
    ]
    content = "".join(c.delta.content or "" for c in chunks)
    fragments = [f for c in chunks for f in c.delta.tool_calls or []]
    names = [f.function.name for f in fragments if f.function.name]
    arguments: dict[int, str] = {}
    for f in fragments:
        arguments[f.index] = arguments.get(f.index, "") + (f.function.arguments or "")
    assert chunks[-1].finish_reason == plain.finish_reason
    assert (content or None) == plain.message.content
    assert names == [c.function.name for c in plain.message.tool_calls or []]
    assert [arguments[i] for i in sorted(arguments)] == [
        c.function.arguments for c in plain.message.tool_calls or []
    ]


def test_none_answers_in_text(client, any_model):
    choice = ask(client, any_model, tool_choice="none", max_tokens=8).choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason != "tool_calls"
    assert choice.message.content


HISTORY = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 22 degrees"},
]


def test_a_conversation_with_calls_and_results_goes_through_the_template(client, any_model):
    before = ask(client, any_model, tool_choice="none", max_tokens=1)
    after = ask(client, any_model, HISTORY, tool_choice="none", max_tokens=8)
    assert after.choices[0].message.content and after.choices[0].finish_reason != "tool_calls"
    # The call and its result are in the prompt: the same tokens more than the question alone.
    assert after.usage.prompt_tokens > before.usage.prompt_tokens + 10


@pytest.mark.parametrize(
    ("change", "param", "named"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "nope"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string", "format": "nope"}},
                    }
                ]
            },
            "tools[0].function.parameters",
            "nope",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type", "custom"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name", ""),
        ({"tools": TOOLS + TOOLS[:1]}, "tools[2]", "get_weather"),
        ({"tools": [], "tool_choice": "required"}, "tools", ""),
        ({"response_format": {"type": "json_object"}}, "response_format", ""),
    ],
)
def test_bad_tools_are_400_naming_the_field(client, model, change, param, named):
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, model, **change)
    error = error_of(info.value)
    assert error["param"] == param and named in error["message"]


def test_bad_arguments_in_the_history_are_400(client, model):
    broken = json.loads(json.dumps(HISTORY))
    broken[1]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, model, broken)
    assert error_of(info.value)["param"] == "messages[1].tool_calls[0].function.arguments"


def test_the_server_still_serves_after_bad_tool_requests(client, model):
    with pytest.raises(openai.BadRequestError):
        ask(client, model, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert ask(client, model, tool_choice="none", max_tokens=2).choices[0].message.content is not None
