"""SSE keep-alive on a fake engine whose first token comes after the stream's grace period."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.generation.types import GenerationChunk, GenerationRequest
from radis_mlx.pool import ModelPool
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio

BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}


class SlowFailure(FakeEngine):
    """Fails during its (slow) prefill, after the response has started."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        await asyncio.sleep(0.25)
        raise RuntimeError("prefill failed")
        yield  # an async generator, like every engine's


def app_with(engine: FakeEngine):
    server = ServerSettings(allowed_hosts=["testserver.local"], stream_grace=0.05, keepalive_interval=0.1)
    config = Config(server=server, models={"fake": ModelEntry(source="/nowhere")})

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        return engine

    pool = ModelPool(config, factory=factory)
    return create_app(config, pool), pool


async def test_slow_first_token_sends_keepalive_comments_then_the_events():
    app, _ = app_with(FakeEngine(delay=0.35))
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200
    blocks = response.text.split("\n\n")
    comments = [b for b in blocks if b.startswith(":")]
    data = [b for b in blocks if b.startswith("data: ")]
    assert len(comments) >= 2 and set(comments) == {": keep-alive"}
    first_event = blocks.index(data[0])
    assert all(i < first_event for i, b in enumerate(blocks) if b.startswith(":"))  # none once events flow
    assert data[-1] == "data: [DONE]" and '"finish_reason":"length"' in data[-2]


async def test_fast_first_token_sends_no_comment_and_errors_stay_http_errors():
    app, _ = app_with(FakeEngine(delay=0.0))
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/v1/chat/completions", json=BODY)
        long_prompt = [{"role": "user", "content": "x " * 100}]
        too_long = await client.post("/v1/chat/completions", json={**BODY, "messages": long_prompt})
    assert response.status_code == 200 and ": keep-alive" not in response.text
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"


async def test_an_error_after_the_grace_period_is_an_error_event():
    app, _ = app_with(SlowFailure())
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200
    assert ": keep-alive" in response.text and '"type":"server_error"' in response.text
    assert response.text.endswith("data: [DONE]\n\n")
