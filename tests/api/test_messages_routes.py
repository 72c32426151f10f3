"""POST /v1/messages and /count_tokens on a fake engine: Anthropic's shapes, events and error bodies."""

from __future__ import annotations

import pytest

from tests.support.sse import named_events

pytestmark = pytest.mark.anyio

HI = {"model": "fake", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}


async def test_message_shape_and_count_tokens(client):
    message = (await client.post("/v1/messages", json=HI)).json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "one two three"}]
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["input_tokens"] == 1 and message["usage"]["output_tokens"] == 3
    count = await client.post("/v1/messages/count_tokens", json={"model": "fake", "messages": HI["messages"]})
    assert count.json() == {"input_tokens": 1}


async def test_stream_events_in_the_reference_order(client):
    events = named_events((await client.post("/v1/messages", json={**HI, "stream": True})).text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[2:] == [
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


async def test_errors_take_anthropics_shape_and_a_failed_stream_counts_as_failed(client, fake_engine):
    bad = await client.post("/v1/messages", json={"model": "fake", "messages": []})
    assert bad.status_code == 400
    body = bad.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    missing = await client.post("/v1/messages", json={**HI, "model": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    fake_engine.fail_after = 1
    before = (await client.get("/api/v0/metrics")).json()["requests_failed"]
    events = named_events((await client.post("/v1/messages", json={**HI, "stream": True})).text)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert (await client.get("/api/v0/metrics")).json()["requests_failed"] == before + 1
