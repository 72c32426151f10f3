"""POST /v1/completions on a fake engine."""

from __future__ import annotations

import json

import pytest

from tests.support.sse import data_events

pytestmark = pytest.mark.anyio


async def test_completions_multiple_prompts_and_n(client):
    body = {"model": "fake", "prompt": ["a", "b c"], "max_tokens": 2, "n": 2}
    reply = (await client.post("/v1/completions", json=body)).json()
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2, 3]
    assert reply["usage"]["prompt_tokens"] == 1 + 2
    assert reply["usage"]["completion_tokens"] == 8


async def test_completions_stream_framing_and_echo(client):
    body = {"model": "fake", "prompt": "a b", "max_tokens": 2, "stream": True, "echo": True}
    events = data_events((await client.post("/v1/completions", json=body)).text)
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a bone two"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_completions_bad_prompt_is_a_400_naming_it(client):
    response = await client.post("/v1/completions", json={"model": "fake", "prompt": []})
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
