"""/v1/responses end to end: the openai SDK's Responses API against both engines.

Greedy output must equal /v1/chat/completions for the same conversation: the Responses API is a
different shape over the same generation, never a different model behavior.
"""

from __future__ import annotations

import json

import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel, Field

from tests.support.errors import error_of

QUESTION = "Which city is the capital of France?"
UNENFORCEABLE = {"type": "object", "dependentRequired": {"a": ["b"]}}

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CHAT_WEATHER = {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
ASK_WEATHER = "What is the weather in Paris?"


def chat_text(client, model, messages, max_tokens):
    reply = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=max_tokens
    )
    return reply.choices[0], reply.usage


def test_string_input_equals_chat(client, model):
    response = client.responses.create(model=model, input=QUESTION, temperature=0, max_output_tokens=8)
    choice, usage = chat_text(client, model, [{"role": "user", "content": QUESTION}], 8)
    assert response.output_text == choice.message.content
    assert response.object == "response" and response.id.startswith("resp_") and response.model == model
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.input_tokens == usage.prompt_tokens
    assert response.usage.output_tokens == usage.completion_tokens
    assert response.usage.total_tokens == usage.total_tokens
    cut = choice.finish_reason == "length"
    assert response.status == ("incomplete" if cut else "completed")
    assert (response.incomplete_details is not None) == cut


def test_instructions_and_message_items_equal_chat(client, model):
    items = [
        {"role": "developer", "content": "Answer in one word."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
    ]
    response = client.responses.create(
        model=model, instructions="You are terse.", input=items, temperature=0, max_output_tokens=6
    )
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": QUESTION},
    ]
    assert response.output_text == chat_text(client, model, messages, 6)[0].message.content
    assert response.instructions == "You are terse."


def test_stream_events_in_order_and_equal_to_non_stream(client, model):
    plain = client.responses.create(model=model, input=QUESTION, temperature=0, max_output_tokens=6)
    events = list(
        client.responses.create(model=model, input=QUESTION, temperature=0, max_output_tokens=6, stream=True)
    )
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    last = "response.completed" if plain.status == "completed" else "response.incomplete"
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        last,
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == plain.output_text == events[-4].text
    final = events[-1].response
    assert final.output_text == text
    counts = ("input_tokens", "output_tokens", "total_tokens")
    assert [getattr(final.usage, c) for c in counts] == [getattr(plain.usage, c) for c in counts]
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1


class City(BaseModel):
    city: str = Field(max_length=12)


def test_parse_with_a_pydantic_format_and_stream_helper(client, model):
    parsed = client.responses.parse(
        model=model,
        input="Name the capital of France.",
        text_format=City,
        temperature=0,
        max_output_tokens=24,
    )
    assert parsed.status == "completed", parsed.output_text
    assert isinstance(parsed.output_parsed, City)
    schema = City.model_json_schema()
    with client.responses.stream(
        model=model,
        input="Name a city.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema}},
        temperature=1.0,
        # Room for the worst sampled case: 12 characters as six-token \uXXXX escapes (24 ran out once).
        max_output_tokens=96,
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    jsonschema_rs.validate(schema, json.loads(final.output_text))


def test_json_object_format_equals_chat_and_parses(client, model):
    ask = "What is the capital of France? Answer in JSON."
    response = client.responses.create(
        model=model, input=ask, text={"format": {"type": "json_object"}}, temperature=0, max_output_tokens=24
    )
    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": ask}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=24,
    )
    assert response.output_text == chat.choices[0].message.content
    assert response.status == "completed", response.output_text
    assert isinstance(json.loads(response.output_text), dict)


def test_previous_response_id_continues_the_conversation(client, model):
    first = client.responses.create(model=model, input=QUESTION, temperature=0, max_output_tokens=6)
    second = client.responses.create(
        model=model, previous_response_id=first.id, input="And of Italy?", temperature=0, max_output_tokens=6
    )
    history = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And of Italy?"},
    ]
    assert second.previous_response_id == first.id
    assert second.output_text == chat_text(client, model, history, 6)[0].message.content
    assert client.responses.retrieve(second.id).output_text == second.output_text
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)


def test_unknown_or_unstored_previous_response_is_400(client, model):
    unstored = client.responses.create(model=model, input="Hi", store=False, max_output_tokens=2)
    for previous in ("resp_does_not_exist", unstored.id):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(
                model=model, input="Hi", previous_response_id=previous, max_output_tokens=2
            )
        error = error_of(info.value)
        assert error["param"] == "previous_response_id" and error["code"] == "previous_response_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content",
        ),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": UNENFORCEABLE}}}, "text.format"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_unsupported_or_bad_fields_are_400_naming_them(client, model, extra, param):
    body = {"model": model, "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(**body)
    error = error_of(info.value)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_required_tool_gives_a_function_call_equal_to_chat(client, model):
    response = client.responses.create(
        model=model,
        input=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=60,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls, response.output
    assert all(c.name == "get_weather" and c.status == "completed" for c in calls)
    for call in calls:
        jsonschema_rs.validate(WEATHER["parameters"], json.loads(call.arguments))
    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": ASK_WEATHER}],
        tools=[CHAT_WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    )
    expected = [(c.function.name, c.function.arguments) for c in chat.choices[0].message.tool_calls]
    assert [(c.name, c.arguments) for c in calls] == expected


def test_function_call_stream_events_and_tool_output_turn(client, model):
    kwargs = {"tools": [WEATHER], "parallel_tool_calls": False, "temperature": 0, "max_output_tokens": 60}
    events = list(
        client.responses.create(model=model, input=ASK_WEATHER, tool_choice="required", stream=True, **kwargs)
    )
    final = events[-1].response
    call = next(item for item in final.output if item.type == "function_call")
    kinds = [
        e.type for e in events if getattr(e, "item_id", None) == call.id or getattr(e, "item", None) == call
    ]
    assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.output_item.done"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == call.arguments
    plain = client.responses.create(model=model, input=ASK_WEATHER, tool_choice="required", **kwargs)
    assert [(i.name, i.arguments) for i in plain.output if i.type == "function_call"] == [
        (call.name, call.arguments)
    ]
    # The tool's answer goes back as a function_call_output item; the model now answers in text.
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 21}'}
    followup = client.responses.create(
        model=model, previous_response_id=plain.id, input=[answer], tool_choice="none", **kwargs
    )
    assert followup.output[0].type == "message" and followup.output_text
    replayed = client.responses.create(
        model=model,
        input=[{"role": "user", "content": ASK_WEATHER}, *[i.model_dump() for i in plain.output], answer],
        tool_choice="none",
        **kwargs,
    )
    # The same conversation either way (outputs may differ on llama.cpp, whose prompt cache can tip a tie).
    assert replayed.usage.input_tokens == followup.usage.input_tokens
    assert replayed.output[0].type == "message"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="no-such-model", input="Hi")
    assert error_of(info.value)["code"] == "model_not_found"
