"""/v1/messages end to end: the official anthropic SDK against both engines.

Greedy output must equal /v1/chat/completions for the same conversation; errors on these routes
are in Anthropic's shape.
"""

from __future__ import annotations

import json

import anthropic
import jsonschema_rs
import pytest

from tests.support.server import STARTER_SOURCE, RunningServer

QUESTION = "Which city is the capital of France?"
SYSTEM = "You are terse."
# Newer anthropic SDKs dropped temperature/top_p/top_k from create(); the API (and we) still take them.
GREEDY = {"temperature": 0}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CHAT_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": WEATHER["description"],
        "parameters": WEATHER["input_schema"],
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def claude(server):
    with anthropic.Anthropic(base_url=server.base, api_key="anything", max_retries=0, timeout=300) as client:
        yield client


def chat(client, model, max_tokens, **kwargs):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=max_tokens, **kwargs
    )
    return reply.choices[0], reply.usage


def ask(claude, model, max_tokens, **kwargs):
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    return claude.messages.create(
        model=model, system=SYSTEM, messages=messages, max_tokens=max_tokens, extra_body=GREEDY, **kwargs
    )


def anthropic_error(exc: anthropic.APIStatusError) -> dict:
    body = exc.response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


def test_message_equals_chat(claude, client, model):
    message = ask(claude, model, 8)
    choice, usage = chat(client, model, 8)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == choice.message.content
    assert message.stop_reason == {"length": "max_tokens", "stop": "end_turn"}[choice.finish_reason]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_stream_helper_equals_non_stream(claude, model):
    plain = ask(claude, model, 6)
    messages = [{"role": "user", "content": QUESTION}]
    with claude.messages.stream(
        model=model, system=SYSTEM, messages=messages, max_tokens=6, extra_body=GREEDY
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == plain.content[0].text == final.content[0].text
    assert final.stop_reason == plain.stop_reason
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_raw_stream_events_in_order(claude, model):
    events = list(ask(claude, model, 4, stream=True))
    kinds = [e.type for e in events]
    deltas = kinds.count("content_block_delta")
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e.delta.type == "text_delta" for e in events if e.type == "content_block_delta")


def test_count_tokens_matches_usage(claude, model):
    message = ask(claude, model, 2)
    counted = claude.messages.count_tokens(
        model=model, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    )
    assert counted.input_tokens == message.usage.input_tokens


def test_stop_sequences_cut_the_text(claude, client, model):
    full = ask(claude, model, 12).content[0].text
    words = full.split()
    if len(words) < 2:
        pytest.fail(f"the greedy answer is too short to cut: {full!r}")
    cut = ask(claude, model, 12, stop_sequences=[words[1]])
    assert cut.content[0].text == full[: full.index(words[1])]
    assert cut.stop_reason == "end_turn"


def test_output_config_json_schema_is_enforced(claude, model):
    message = claude.messages.create(
        model=model,
        messages=[{"role": "user", "content": "Name a city."}],
        max_tokens=24,
        # Through extra_body: older anthropic SDKs have no output_config argument.
        extra_body={"temperature": 1.0, "output_config": {"format": {"type": "json_schema", "schema": CITY}}},
    )
    assert message.stop_reason == "end_turn", message.content[0].text
    jsonschema_rs.validate(CITY, json.loads(message.content[0].text))


def test_tool_choice_any_gives_tool_use_equal_to_chat(claude, client, model):
    message = claude.messages.create(
        model=model,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        max_tokens=60,
        extra_body=GREEDY,
    )
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses and message.stop_reason == "tool_use"
    for use in uses:
        jsonschema_rs.validate(WEATHER["input_schema"], use.input)
    chat = client.chat.completions.create(
        model=model,
        messages=ASK_WEATHER,
        tools=[CHAT_WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    )
    expected = [
        (c.function.name, json.loads(c.function.arguments)) for c in chat.choices[0].message.tool_calls
    ]
    assert [(u.name, u.input) for u in uses] == expected


ONE_CALL = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


def test_streamed_tool_use_and_tool_result_turn(claude, model):
    kwargs = {"model": model, "tools": [WEATHER], "max_tokens": 60, "extra_body": GREEDY}
    plain = claude.messages.create(messages=ASK_WEATHER, tool_choice=ONE_CALL, **kwargs)
    with claude.messages.stream(messages=ASK_WEATHER, tool_choice=ONE_CALL, **kwargs) as stream:
        final = stream.get_final_message()

    def blocks(message):
        return [b.model_dump(exclude={"id"}) for b in message.content]

    assert blocks(final) == blocks(plain)
    assert final.stop_reason == plain.stop_reason == "tool_use"
    use = next(b for b in plain.content if b.type == "tool_use")
    result = {
        "type": "tool_result",
        "tool_use_id": use.id,
        "content": [{"type": "text", "text": "21 C, sunny"}],
    }
    followup = claude.messages.create(
        messages=[
            *ASK_WEATHER,
            {"role": "assistant", "content": plain.content},
            {"role": "user", "content": [result]},
        ],
        tool_choice={"type": "none"},
        **kwargs,
    )
    assert [b.type for b in followup.content] == ["text"] and followup.stop_reason in (
        "end_turn",
        "max_tokens",
    )


def test_missing_max_tokens_is_an_anthropic_400(claude, model):
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=0)
    error = anthropic_error(info.value)
    assert error["type"] == "invalid_request_error" and "max_tokens" in error["message"]


def test_unknown_model_is_an_anthropic_404(claude):
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert anthropic_error(info.value)["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice"),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]},
            "prefill",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}
                ]
            },
            "image",
        ),
    ],
)
def test_unsupported_fields_are_400_naming_them(claude, model, extra, named):
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **extra}
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(**body)
    assert named in anthropic_error(info.value)["message"]


@pytest.fixture(scope="module")
def locked(tmp_path_factory, smollm_gguf):
    config = (
        f'[models.smollm2-llamacpp]\nsource = "{STARTER_SOURCE}"\nengine = "llamacpp"\ncontext_length = 512\n'
    )
    server = RunningServer(
        config, tmp_path_factory.mktemp("locked"), extra_args=("--api-key", "key-one")
    ).wait_ready()
    yield server
    assert server.stop() == 0, server.log_tail()


def test_api_key_as_x_api_key_and_anthropic_shaped_401(locked):
    ask = {"model": "smollm2-llamacpp", "messages": [{"role": "user", "content": "Hi"}]}
    with anthropic.Anthropic(base_url=locked.base, api_key="key-one", max_retries=0) as good:
        assert good.messages.count_tokens(**ask).input_tokens > 0
    with (
        anthropic.Anthropic(base_url=locked.base, api_key="wrong", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        bad.messages.create(max_tokens=2, **ask)
    assert anthropic_error(info.value)["type"] == "authentication_error"
