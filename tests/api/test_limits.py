"""Per-request timeout and faults, on the fake engine."""

from __future__ import annotations

import asyncio
import json
import time

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


async def fake_factory(model_id, entry):
    return FakeEngine()


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
    app, _ = app_with(fake_factory)
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            path, content=body % _nested(3000), headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "nested too deeply" in error["message"]


WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def _tools(count: int) -> list[dict]:
    return [{**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "name": f"f{i}"}} for i in range(count)]


LISTS = [
    ("/v1/chat/completions", {**CHAT, "tools": _tools(5000)}, "tools"),
    ("/v1/chat/completions", {**CHAT, "stop": [f"s{i}" for i in range(1000)]}, "stop"),
    ("/v1/chat/completions", {**CHAT, "stop": "x" * 600}, "stop"),
    ("/v1/completions", {"model": "fake", "prompt": ["hi"] * 1500}, "prompt"),
    ("/v1/completions", {"model": "fake", "prompt": [[1]] * 100, "n": 2}, "prompt"),
    ("/v1/chat/completions", {**CHAT, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ("/v1/chat/completions", {**CHAT, "metadata": {"k": "v" * 513}}, "metadata[...]"),
    ("/v1/chat/completions", {**CHAT, "metadata": {"k" * 65: "v"}}, "metadata"),
    ("/v1/chat/completions", {**CHAT, "user": "u" * 257}, "user"),
    ("/v1/responses", {"model": "fake", "input": "hi", "metadata": {"k": "v" * 4_000_000}}, "metadata[...]"),
    (
        "/v1/responses",
        {
            "model": "fake",
            "input": "hi",
            "tools": [t["function"] | {"type": "function"} for t in _tools(129)],
        },
        "tools",
    ),
    ("/v1/messages", {**CHAT, "max_tokens": 4, "stop_sequences": ["s"] * 17}, "stop_sequences"),
    (
        "/v1/messages",
        {
            **CHAT,
            "max_tokens": 4,
            "tools": [{"name": f"f{i}", "input_schema": {"type": "object"}} for i in range(129)],
        },
        "tools",
    ),
]


@pytest.mark.parametrize(("path", "body", "param"), LISTS, ids=[f"{p}:{n}" for p, _, n in LISTS])
async def test_oversized_lists_are_quick_400s_naming_the_field_while_health_answers(path, body, param):
    app, _ = app_with(fake_factory)
    async with AsyncTestClient(app=app) as client:
        health_latencies: list[float] = []

        async def poll_health(stop: asyncio.Event) -> None:
            while not stop.is_set():
                started = time.monotonic()
                assert (await client.get("/health")).status_code == 200
                health_latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.01)

        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(stop))
        started = time.monotonic()
        response = await client.post(path, json=body)
        took = time.monotonic() - started
        stop.set()
        await poller
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error.get("param", param) == param or param in error["message"], error
    slowest = max(health_latencies, default=0.0)
    # Generous for a loaded 2-core box; unbounded, these lists were checked on the event loop (issue 18).
    assert took < 5.0 and slowest < 2.0, (took, slowest)


OLLAMA_CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": False}
OLLAMA_LISTS = [
    ({**OLLAMA_CHAT, "tools": _tools(129)}, "tools"),
    ({**OLLAMA_CHAT, "options": {"stop": [f"s{i}" for i in range(17)]}}, "options.stop"),
    ({**OLLAMA_CHAT, "options": {"stop": ["x" * 600]}}, "options.stop"),
]


@pytest.mark.parametrize(("body", "field"), OLLAMA_LISTS, ids=["tools", "stops", "stop-length"])
async def test_ollama_lists_are_bounded_too_in_ollamas_error_shape(body, field):
    app, _ = app_with(fake_factory)
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/api/chat", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"], response.text


@pytest.mark.parametrize("name", ["chat_template", "tokenize", "conversation"])
async def test_chat_template_kwargs_are_variables_never_a_template_of_the_clients(name):
    app, _ = app_with(fake_factory)
    body = {**CHAT, "chat_template_kwargs": {name: "{% for i in range(99999) %}{% endfor %}"}}
    async with AsyncTestClient(app=app) as client:
        refused = await client.post("/v1/chat/completions", json=body)
        kept = await client.post("/v1/chat/completions", json={**CHAT, "chat_template_kwargs": {"x": 1}})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == f"chat_template_kwargs.{name}"
    assert kept.status_code == 200, kept.text
