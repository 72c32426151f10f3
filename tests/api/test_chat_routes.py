"""POST /v1/chat/completions on a fake engine: shapes, SSE framing and error bodies."""

from __future__ import annotations

import json

import pytest

from tests.support.sse import data_events

pytestmark = pytest.mark.anyio


async def test_chat_completion_shape(client):
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    reply = (await client.post("/v1/chat/completions", json=body)).json()
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {
        "role": "assistant",
        "content": "one two three",
        "refusal": None,
    }
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 3,
        "total_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def test_chat_stream_framing(client):
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = data_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c for c in chunks if "usage" in c] == [chunks[-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == "one two"


async def test_stream_error_after_start_ends_with_error_event_and_done(client, fake_engine):
    fake_engine.fail_after = 2
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = data_events((await client.post("/v1/chat/completions", json=body)).text)
    error = json.loads(events[-2])["error"]
    assert error["type"] == "server_error" and "fake engine failure" in error["message"]
    # The model stays usable afterwards.
    fake_engine.fail_after = None
    again = await client.post("/v1/chat/completions", json={**body, "stream": False})
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake", "messages": []}, "messages"),
        ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "fake", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
        ({"model": "fake", "messages": [{"role": "user", "content": "x"}], "top_p": "high"}, "top_p"),
        ({"model": "fake", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
async def test_bad_requests_are_openai_shaped_400s(client, body, param):
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_malformed_json_and_unknown_route(client):
    response = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


async def test_max_tokens_past_the_context_is_clamped_and_a_prompt_that_fills_it_is_a_400(
    client, fake_engine
):
    fake_engine.script = ["w"] * 100
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}
    reply = (await client.post("/v1/chat/completions", json=body)).json()
    # The fake counts one prompt token per word: it generates until its 64-token context is full.
    assert reply["usage"]["completion_tokens"] == 63 and reply["choices"][0]["finish_reason"] == "length"
    long = {**body, "messages": [{"role": "user", "content": "x " * 64}]}
    response = await client.post("/v1/chat/completions", json=long)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


async def test_unknown_fields_are_ignored(client):
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
        "some_future_field": {"x": 1},
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
