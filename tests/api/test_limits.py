"""Per-request timeout and faults, on the fake engine."""

from __future__ import annotations

import json

import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.pool import ModelPool, ModelState
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


def app_with(factory, **server):
    settings = ServerSettings(allowed_hosts=["testserver.local"], **server)
    config = Config(server=settings, models={"fake": ModelEntry(source="/nowhere")})
    pool = ModelPool(config, factory=factory)
    return create_app(config, pool), pool


async def test_slow_generation_is_408_and_an_error_event_when_streaming():
    engine = FakeEngine(delay=0.1)

    async def factory(model_id, entry):
        return engine

    app, _ = app_with(factory, request_timeout=0.25)
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 408 and response.json()["error"]["code"] == "timeout"
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        events = [e.removeprefix("data: ") for e in streamed.text.split("\n\n") if e]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "timeout"
        assert engine.active_generations == 0  # the timed-out generations were closed


async def test_out_of_memory_on_load_is_a_clean_error_and_the_pool_stays_consistent():
    attempts = []

    async def factory(model_id, entry):
        attempts.append(1)
        if len(attempts) == 1:
            raise MemoryError("cannot allocate 8 GiB")
        return FakeEngine()

    app, pool = app_with(factory)
    async with AsyncTestClient(app=app) as client:
        failed = await client.post("/v1/chat/completions", json=CHAT)
        assert failed.status_code == 500 and "MemoryError" in failed.json()["error"]["message"]
        assert pool.get("fake").state is ModelState.NOT_LOADED
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert pool.get("fake").state is ModelState.LOADED


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            '{"model": "fake", "messages": [{"role": "user", "content": "hi"}], '
            '"response_format": {"type": "json_schema", "json_schema": {"schema": %s}}}',
        ),
        (
            "/v1/messages",
            '{"model": "fake", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}], '
            '"metadata": %s}',
        ),
        ("/v1/responses", '{"model": "fake", "input": [%s]}'),
        ("/v1/completions", "%s"),
    ],
)
async def test_3000_deep_json_is_a_400_in_the_routes_shape(path, body):
    app, _ = app_with(lambda *_: FakeEngine())
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            path, content=body % _nested(3000), headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "nested too deeply" in error["message"]
