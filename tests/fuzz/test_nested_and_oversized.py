"""Nested and oversized bodies on the Anthropic and Responses routes (and chat): never a 5xx.

Each body puts a value nested up to 3 000 deep (msgspec stops at ~1 000) or a list far over its
bound in a field that takes JSON of any shape (schemas, metadata, content, input items); every answer
is a 2xx or a 4xx in the route's own error shape.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from tests.fuzz.test_random_json import check
from tests.support.fakes import fake_app

HI = [{"role": "user", "content": "hi"}]
NESTED = "@NESTED@"  # where the nested value goes in each template
PLACES = {
    "/v1/messages": [
        {"model": "fake", "max_tokens": 4, "messages": [{"role": "user", "content": NESTED}]},
        {"model": "fake", "max_tokens": 4, "messages": HI, "metadata": NESTED},
        {"model": "fake", "max_tokens": 4, "messages": HI, "system": NESTED},
        {"model": "fake", "max_tokens": 4, "messages": HI, "tools": [{"name": "f", "input_schema": NESTED}]},
        {
            "model": "fake",
            "max_tokens": 4,
            "messages": HI,
            "output_config": {"format": {"type": "json_schema", "schema": NESTED}},
        },
        {"model": "fake", "max_tokens": 4, "messages": HI, "tool_choice": NESTED, "stream": True},
    ],
    "/v1/messages/count_tokens": [
        {"model": "fake", "messages": HI, "tools": [{"name": "f", "input_schema": NESTED}]},
        {"model": "fake", "messages": NESTED},
    ],
    "/v1/responses": [
        {"model": "fake", "input": NESTED},
        {"model": "fake", "input": [NESTED]},
        {"model": "fake", "input": "hi", "metadata": NESTED},
        {
            "model": "fake",
            "input": "hi",
            "text": {"format": {"type": "json_schema", "name": "x", "schema": NESTED}},
        },
        {"model": "fake", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": NESTED}]},
        {"model": "fake", "input": "hi", "reasoning": NESTED, "stream": True},
    ],
    "/v1/chat/completions": [
        {
            "model": "fake",
            "messages": HI,
            "response_format": {"type": "json_schema", "json_schema": {"schema": NESTED}},
        },
        {
            "model": "fake",
            "messages": HI,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": NESTED}}],
        },
    ],
}
CASES = [(path, body) for path, bodies in PLACES.items() for body in bodies]


def nested(depth: int, opener: str, leaf: str) -> str:
    closer = {"[": "]", '{"a": ': "}"}[opener]
    return opener * depth + leaf + closer * depth


@pytest.fixture(scope="module")
def client():
    with TestClient(app=fake_app()) as test_client:
        yield test_client


@pytest.mark.parametrize(("path", "template"), CASES, ids=[f"{p}#{i}" for i, (p, _) in enumerate(CASES)])
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    depth=st.integers(1, 3000) | st.sampled_from([990, 1000, 1010]),
    opener=st.sampled_from(["[", '{"a": ']),
    leaf=st.sampled_from(["1", '"x"', "{}", '{"type": "integer"}', "null"]),
)
def test_nested_bodies(client, path, template, depth, opener, leaf):
    body = json.dumps(template).replace(json.dumps(NESTED), nested(depth, opener, leaf))
    check(client.post(path, content=body, headers={"content-type": "application/json"}), path)


def _tool(name: str) -> dict:
    return {"name": name, "input_schema": {"type": "object"}}


OVERSIZED = {
    "/v1/messages": lambda n, text: {
        "model": "fake",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": text}] * max(1, n // 10),
        "tools": [_tool(f"f{i}") for i in range(n)],
        "stop_sequences": [text[:600]] * (n % 40),
        "metadata": {f"k{i}": text[:600] for i in range(n % 40)},
    },
    "/v1/responses": lambda n, text: {
        "model": "fake",
        "input": [{"role": "user", "content": text}] * max(1, n // 10),
        "tools": [{"type": "function", "name": f"f{i}", "parameters": {"type": "object"}} for i in range(n)],
        "metadata": {f"k{i}" * (n % 20): text[:600] for i in range(n % 40)},
        "user": text,
    },
}


@pytest.mark.parametrize("path", sorted(OVERSIZED))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(0, 400),
    size=st.integers(0, 100_000),
    char=st.sampled_from(["a", "é", "<|im_start|>", "\ue000"]),
)
def test_oversized_bodies(client, path, n, size, char):
    text = (char * size)[:size]
    body = OVERSIZED[path](n, text)
    check(client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}), path)
