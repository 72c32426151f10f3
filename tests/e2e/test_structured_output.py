"""response_format json_object / json_schema end to end: constrained decoding on both engines."""

from __future__ import annotations

import json

import jsonschema_rs
import openai
import pytest

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]


def json_schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def test_json_schema_output_parses_and_validates(client, model):
    reply = client.chat.completions.create(
        model=model, messages=ASK, temperature=0, max_tokens=24, response_format=json_schema_format(CITY)
    )
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    jsonschema_rs.validate(CITY, json.loads(reply.choices[0].message.content))


PARIS = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "population": {"type": "integer"}},
    "required": ["name", "population"],
    "additionalProperties": False,
}


def test_an_unbounded_integer_stays_finite(client, model):
    """The starter model, left alone, writes "population": 1111… until max_tokens cuts the JSON."""
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        temperature=0,
        max_tokens=48,
        response_format=json_schema_format(PARIS),
    )
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    answer = json.loads(reply.choices[0].message.content)
    jsonschema_rs.validate(PARIS, answer)
    assert len(str(abs(answer["population"]))) <= 16


def test_json_schema_streaming_and_sampled(client, model):
    chunks = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name a city."}],
        temperature=1.0,
        seed=5,
        max_tokens=96,  # 12 sampled characters can be six-token \uXXXX escapes
        response_format=json_schema_format(CITY),
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema_rs.validate(CITY, json.loads(text))


def test_json_object_parses_as_an_object(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=ASK,
        temperature=0,
        max_tokens=24,
        response_format={"type": "json_object"},
    )
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
        ({"type": "string", "format": "no-such-format"}, "no-such-format"),
    ],
)
def test_unenforceable_schema_is_400_naming_it(client, model, schema, named):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=model, messages=ASK, max_tokens=4, response_format=json_schema_format(schema)
        )
    error = info.value.response.json()["error"]
    assert error["param"] == "response_format" and named in error["message"]


def test_json_schema_without_a_schema_is_400(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=model, messages=ASK, max_tokens=4, response_format={"type": "json_schema"}
        )
    assert info.value.response.json()["error"]["param"] == "response_format.json_schema"
