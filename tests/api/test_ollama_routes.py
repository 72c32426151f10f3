"""Ollama's native API on a fake engine: shapes, NDJSON framing, keep_alive, options, errors."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, PoolSettings, SamplingDefaults, ServerSettings
from radis_mlx.generation.reasoning import THINK
from radis_mlx.generation.types import GenerationChunk, GenerationRequest, ReasoningOptions
from radis_mlx.pool import ModelPool, ModelState
from tests.support.fakes import FakeEngine
from tests.support.model_homes import OllamaStore, gguf_file
from tests.support.ndjson import ndjson_lines

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "hi"}]
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}'
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Recording(FakeEngine):
    """Keeps every request it is given."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.requests.append(request)
        async for chunk in super().generate(request):
            yield chunk


@pytest.fixture
def engine() -> Recording:
    return Recording(context_length=256)


def app_with(engine: FakeEngine, tmp_path, **server):
    settings = ServerSettings(allowed_hosts=["testserver.local"], **server)
    models = {
        "fake": ModelEntry(source=str(tmp_path)),
        "tuned": ModelEntry(source=str(tmp_path), defaults=SamplingDefaults(temperature=0.2, top_k=5)),
        "emb": ModelEntry(source=str(tmp_path), kind="embedding"),
    }
    config = Config(server=settings, models=models)

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        return engine

    pool = ModelPool(config, factory=factory)
    return create_app(config, pool), pool


@pytest.fixture
async def client(engine, tmp_path):
    app, pool = app_with(engine, tmp_path)
    async with AsyncTestClient(app=app) as test_client:
        test_client.pool = pool
        yield test_client


def assert_final(chunk: dict) -> None:
    assert chunk["done"] is True and chunk["done_reason"] in ("stop", "length")
    assert all(isinstance(chunk[k], int) and chunk[k] >= 0 for k in DURATIONS)
    assert isinstance(chunk["prompt_eval_count"], int) and isinstance(chunk["eval_count"], int)


async def test_chat_streams_ndjson_by_default_and_matches_the_single_reply(client):
    response = await client.post(
        "/api/chat", json={"model": "fake", "messages": HI, "options": {"num_predict": 3}}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    chunks = ndjson_lines(response.text)
    for chunk in chunks:
        assert chunk["model"] == "fake" and chunk["message"]["role"] == "assistant"
        datetime.fromisoformat(chunk["created_at"].replace("Z", "+00:00"))
    assert [c["done"] for c in chunks] == [False, False, False, True]
    assert_final(chunks[-1])
    assert chunks[-1]["done_reason"] == "length" and chunks[-1]["eval_count"] == 3
    streamed = "".join(c["message"]["content"] for c in chunks)
    single = await client.post(
        "/api/chat", json={"model": "fake", "messages": HI, "options": {"num_predict": 3}, "stream": False}
    )
    assert single.headers["content-type"].startswith("application/json")
    body = single.json()
    assert (
        body["message"]
        == {"role": "assistant", "content": streamed}
        == {"role": "assistant", "content": "one two three"}
    )
    assert_final(body)


async def test_generate_streams_response_pieces_and_echoes_the_name_asked_for(client, engine):
    response = await client.post(
        "/api/generate", json={"model": "FAKE:latest", "prompt": "hi", "system": "be brief"}
    )
    chunks = ndjson_lines(response.text)
    assert {c["model"] for c in chunks} == {"FAKE:latest"}
    assert "".join(c["response"] for c in chunks) == "one two three four five six seven eight"
    assert_final(chunks[-1])
    # Not raw: a one-turn chat through the template, the system prompt first.
    assert [(m.role, m.content) for m in engine.requests[-1].messages] == [
        ("system", "be brief"),
        ("user", "hi"),
    ]
    raw = await client.post(
        "/api/generate", json={"model": "fake", "prompt": "x y", "raw": True, "stream": False}
    )
    assert raw.json()["response"].startswith("one") and engine.requests[-1].prompt == "x y"


async def test_options_map_onto_sampling_and_unknown_keys_are_ignored(client, engine):
    options = {
        "temperature": 0.3,
        "top_p": 0.5,
        "top_k": 7,
        "min_p": 0.05,
        "seed": 42,
        "stop": ["five"],
        "repeat_penalty": 1.2,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.6,
        "num_predict": 6.0,  # Ollama takes any number for an integer option
        "num_ctx": 999999,  # accepted, ignored: the entry's context applies
        "mirostat": 2,
        "numa": True,
    }
    reply = await client.post(
        "/api/chat", json={"model": "fake", "messages": HI, "options": options, "stream": False}
    )
    assert reply.status_code == 200 and reply.json()["message"]["content"] == "one two three four "
    request = engine.requests[-1]
    sampling = request.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (0.3, 0.5, 7, 0.05)
    assert (sampling.seed, sampling.repetition_penalty) == (42, 1.2)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.4, 0.6)
    assert request.stop == ["five"] and request.max_tokens == 6


async def test_defaults_are_the_entrys_then_ollamas(client, engine):
    await client.post("/api/chat", json={"model": "fake", "messages": HI, "stream": False})
    sampling = engine.requests[-1].sampling
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed) == (0.8, 40, 0.9, None)
    assert engine.requests[-1].max_tokens is None
    await client.post(
        "/api/chat",
        json={"model": "tuned", "messages": HI, "stream": False, "options": {"seed": -1, "num_predict": -1}},
    )
    sampling = engine.requests[-1].sampling
    assert (sampling.temperature, sampling.top_k, sampling.seed) == (0.2, 5, None)
    assert engine.requests[-1].max_tokens is None


async def test_num_predict_past_the_context_stops_at_its_end(client):
    body = {"model": "fake", "messages": HI, "stream": False, "options": {"num_predict": 100000}}
    reply = (await client.post("/api/chat", json=body)).json()  # clamped to the room, as Ollama does
    assert reply["done"] is True and reply["eval_count"] == 8


async def test_think_maps_onto_reasoning_and_thinking_comes_back_apart(tmp_path):
    engine = Recording(script="<think> let me see </think> Paris it is")
    engine.reasoning = THINK
    app, _ = app_with(engine, tmp_path)
    async with AsyncTestClient(app=app) as client:
        body = {"model": "fake", "messages": HI, "think": True}
        chunks = ndjson_lines((await client.post("/api/chat", json=body)).text)
        assert engine.requests[-1].reasoning == ReasoningOptions(enabled=True)
        single = (await client.post("/api/chat", json={**body, "stream": False, "think": "high"})).json()
        assert engine.requests[-1].reasoning == ReasoningOptions(effort="high")
        generated = (
            await client.post("/api/generate", json={"model": "fake", "prompt": "hi", "stream": False})
        ).json()
        assert engine.requests[-1].reasoning == ReasoningOptions()  # unset: the model's default
        history = [*HI, {"role": "assistant", "content": "Paris", "thinking": "easy"}, *HI]
        await client.post("/api/chat", json={"model": "fake", "messages": history, "think": False})
        assert engine.requests[-1].messages[1].reasoning == "easy"
        shown = (await client.post("/api/show", json={"model": "fake"})).json()
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    content = "".join(c["message"]["content"] for c in chunks)
    assert (thinking, content) == ("let me see ", "Paris it is")
    assert single["message"]["thinking"] == thinking and single["message"]["content"] == content
    assert generated["thinking"] == thinking and generated["response"] == content
    assert "thinking" in shown["capabilities"]


async def test_format_json_and_schema_become_the_constraint(client, engine):
    await client.post("/api/chat", json={"model": "fake", "messages": HI, "format": "json", "stream": False})
    assert engine.requests[-1].json_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    await client.post(
        "/api/generate", json={"model": "fake", "prompt": "hi", "format": schema, "stream": False}
    )
    assert engine.requests[-1].json_schema == schema


async def test_tool_calls_come_back_with_object_arguments(tmp_path):
    app, _ = app_with(Recording(script=CALL), tmp_path)
    body = {"model": "fake", "messages": HI, "tools": [WEATHER], "stream": False}
    async with AsyncTestClient(app=app) as client:
        single = (await client.post("/api/chat", json=body)).json()
        streamed = ndjson_lines((await client.post("/api/chat", json={**body, "stream": True})).text)
    [call] = single["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert call["id"].startswith("call_") and single["message"]["content"] == ""
    assert single["done_reason"] == "stop"
    calls = [c for chunk in streamed for c in chunk["message"].get("tool_calls", [])]
    assert [c["function"] for c in calls] == [call["function"]] and streamed[-1]["done"] is True


async def test_tool_history_keeps_object_arguments_and_names_results(client, engine):
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "3 degrees", "tool_name": "get_weather"},
    ]
    # Clients always send `tools`, often empty: that is no tools, not a 400.
    reply = await client.post(
        "/api/chat", json={"model": "fake", "messages": messages, "tools": [], "stream": False}
    )
    assert reply.status_code == 200
    # The fake's template knows no tools: the history reaches it in the generic format's JSON text.
    history = engine.requests[-1].messages
    assert json.loads(history[1].content) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    }
    # The result names its call through tool_name alone (Ollama's clients send no tool_call_id).
    assert json.loads(history[2].content) == {
        "tool_response": {"name": "get_weather", "content": "3 degrees"}
    }


async def test_empty_messages_load_and_keep_alive_zero_unloads(client, engine):
    loaded = await client.post("/api/chat", json={"model": "fake", "messages": []})
    assert loaded.headers["content-type"].startswith("application/json")  # one object, even when streaming
    assert loaded.json()["done_reason"] == "load" and loaded.json()["done"] is True
    assert [m["name"] for m in (await client.get("/api/ps")).json()["models"]] == ["fake"]
    gone = await client.post("/api/generate", json={"model": "fake", "prompt": "", "keep_alive": 0})
    assert gone.json()["done_reason"] == "unload" and gone.json()["response"] == ""
    assert (await client.get("/api/ps")).json() == {"models": []}
    assert engine.closed == 1


async def test_keep_alive_sets_the_pool_ttl(client, engine):
    pool = client.pool
    await client.post(
        "/api/chat", json={"model": "fake", "messages": HI, "keep_alive": "1h30m", "stream": False}
    )
    assert pool.effective_ttl(pool.get("fake")) == 5400
    await client.post("/api/chat", json={"model": "fake", "messages": HI, "keep_alive": 90, "stream": False})
    assert pool.effective_ttl(pool.get("fake")) == 90
    await client.post("/api/chat", json={"model": "fake", "messages": HI, "keep_alive": -1, "stream": False})
    [running] = (await client.get("/api/ps")).json()["models"]
    assert int(running["expires_at"][:4]) > 2200  # forever: Ollama's far future
    assert (await client.get("/api/v0/models/loaded")).json()["data"][0]["ttl"] is None
    await client.post("/api/chat", json={"model": "fake", "messages": [], "keep_alive": 1.7e308})
    assert int((await client.get("/api/ps")).json()["models"][0]["expires_at"][:4]) > 2200
    await client.post("/api/chat", json={"model": "fake", "messages": [], "keep_alive": -1})
    # 0 with a message: answered, then unloaded once done; the TTL set before stays for the next load.
    body = {"model": "fake", "messages": HI, "keep_alive": "0", "stream": False}
    reply = await client.post("/api/chat", json=body)
    assert reply.status_code == 200 and reply.json()["done"] is True
    await until(lambda: engine.closed == 1)
    assert pool.get("fake").state is ModelState.NOT_LOADED
    streamed = await client.post("/api/generate", json={"model": "fake", "prompt": "hi", "keep_alive": 0})
    assert ndjson_lines(streamed.text)[-1]["done"] is True
    await until(lambda: engine.closed == 2)
    assert math.isinf(pool.effective_ttl(pool.get("fake")))


async def until(condition, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "nope", "messages": HI}, 404, "model 'nope' not found"),
        ({"messages": HI}, 400, "model is required"),
        ({"model": "fake", "messages": HI, "options": {"temperature": "hot"}}, 400, "$.options.temperature"),
        ({"model": "fake", "messages": HI, "options": {"stop": "x"}}, 400, "$.options.stop"),
        ({"model": "fake", "messages": HI, "options": {"top_p": 3}}, 400, "$.options.top_p"),
        ({"model": "fake", "messages": HI, "options": {"seed": 10**30}}, 400, "options.seed"),
        ({"model": "fake", "messages": HI, "keep_alive": "300"}, 400, 'invalid duration "300"'),
        ({"model": "fake", "messages": HI, "keep_alive": True}, 400, "$.keep_alive"),
        ({"model": "fake", "messages": HI, "think": "hard"}, 400, 'invalid think value: "hard"'),
        ({"model": "fake", "messages": HI, "format": "yaml"}, 400, "invalid format: 'yaml'"),
        ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
        (
            {"model": "fake", "messages": [{"role": "user", "content": "x", "images": ["iVBO"]}]},
            400,
            "does not accept images",
        ),
        (
            {"model": "fake", "messages": HI, "tools": [WEATHER], "format": "json"},
            400,
            "format cannot be combined",
        ),
        ({"model": "emb", "messages": HI}, 400, '"emb" does not support chat'),
        ({"model": "fake", "messages": [{"role": "user", "content": "word " * 300}]}, 400, "context length"),
        ({"model": "fake", "messages": HI, "think": True}, 400, '"fake" does not support thinking'),
    ],
)
async def test_bad_chat_requests_get_ollamas_error_shape(client, body, status, error):
    response = await client.post("/api/chat", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and error in response.json()["error"]


async def test_bad_bodies_on_every_route_are_ollama_shaped(client):
    for path in ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show", "/api/pull"):
        broken = await client.post(path, content=b"{nope", headers={"content-type": "application/json"})
        assert broken.status_code == 400 and isinstance(broken.json()["error"], str), path
        missing = await client.post(path, json={"model": "nope", "prompt": "x", "input": "x", "messages": HI})
        assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}, path
    generate = await client.post("/api/generate", json={"model": "fake", "prompt": "x", "images": ["iVBO"]})
    assert generate.status_code == 400 and "images" in generate.json()["error"]
    fim = await client.post("/api/generate", json={"model": "fake", "prompt": "def f(", "suffix": "return x"})
    assert fim.status_code == 400 and "suffix" in fim.json()["error"]
    # Our management API keeps OpenAI's shape.
    admin = await client.post("/api/v0/models/load", json={"model": "nope"})
    assert admin.json()["error"]["code"] == "model_not_found"


async def test_a_failure_mid_stream_ends_with_an_error_line_and_counts_as_failed(client, engine):
    engine.fail_after = 2
    response = await client.post("/api/chat", json={"model": "fake", "messages": HI})
    lines = ndjson_lines(response.text)
    assert response.status_code == 200 and [c.get("done") for c in lines[:-1]] == [False, False]
    assert set(lines[-1]) == {"error"} and "fake engine failure" in lines[-1]["error"]
    assert (await client.get("/api/v0/metrics")).json()["requests_failed"] == 1


async def test_a_long_prefill_is_kept_alive_with_empty_chunks(tmp_path):
    app, _ = app_with(FakeEngine(delay=0.3), tmp_path, stream_grace=0.05, keepalive_interval=0.1)
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            "/api/generate", json={"model": "fake", "prompt": "hi", "options": {"num_predict": 2}}
        )
    chunks = ndjson_lines(response.text)  # no blank line
    beats = [c for c in chunks if c["response"] == "" and not c["done"]]
    assert len(beats) >= 2 and chunks.index(beats[-1]) < next(
        i for i, c in enumerate(chunks) if c["response"]
    )
    assert "".join(c["response"] for c in chunks) == "one two" and chunks[-1]["done"] is True


async def test_model_routes_shapes(client, engine):
    version = (await client.get("/api/version")).json()
    assert version == {"version": "0.12.0"}
    tags = (await client.get("/api/tags")).json()["models"]
    assert [m["name"] for m in tags] == [m["model"] for m in tags] == ["fake", "tuned", "emb"]
    assert all(len(m["digest"]) == 64 and "details" in m for m in tags)
    assert tags[0]["capabilities"] == ["completion", "tools"] and tags[2]["capabilities"] == ["embedding"]
    show = (await client.post("/api/show", json={"name": "tuned:latest"})).json()
    assert show["model_info"] == {} and show["capabilities"] == ["completion", "tools"]
    assert "temperature                    0.2" in show["parameters"] and "FROM " in show["modelfile"]
    assert (await client.get("/api/ps")).json() == {"models": []}
    await client.post("/api/chat", json={"model": "fake", "messages": []})
    [loaded] = (await client.get("/api/ps")).json()["models"]
    assert loaded["name"] == "fake" and loaded["context_length"] == 256
    datetime.fromisoformat(loaded["expires_at"])


async def test_root_answers_ollamas_probe_and_browsers_get_the_dashboard(client):
    assert [(await client.head(p)).status_code for p in ("/", "/api/version", "/api/tags")] == [200] * 3
    probe = await client.get("/")
    assert probe.text == "Ollama is running" and probe.headers["content-type"].startswith("text/plain")
    page = await client.get("/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and "<html" in page.text.lower()


async def test_embed_normalises_and_embeddings_does_not(client):
    embed = (await client.post("/api/embed", json={"model": "emb", "input": ["a b", "c"]})).json()
    assert embed["embeddings"] == [pytest.approx([0.6, 0.8, 0, 0])] * 2 and embed["prompt_eval_count"] == 3
    assert all(isinstance(embed[k], int) for k in ("total_duration", "load_duration"))
    cut = (await client.post("/api/embed", json={"model": "emb", "input": "a", "dimensions": 1})).json()
    assert cut["embeddings"] == [pytest.approx([1.0])]
    legacy = (await client.post("/api/embeddings", json={"model": "emb", "prompt": "a b"})).json()
    assert legacy == {"embedding": [6.0, 8.0, 0.0, 0.0]}
    assert (await client.post("/api/embed", json={"model": "emb", "input": []})).json() == {
        "model": "emb",
        "embeddings": [],
    }
    chat = await client.post("/api/embed", json={"model": "fake", "input": "a"})
    assert chat.status_code == 400 and chat.json() == {"error": 'model: "fake" does not support embeddings'}
    bad = await client.post("/api/embed", json={"model": "emb", "input": [1, 2]})
    assert bad.status_code == 400 and "$.input[0]" in bad.json()["error"]


async def test_pull_streams_status_lines_and_delete_refuses_files_we_do_not_own(client):
    pulled = await client.post("/api/pull", json={"model": "fake:latest"})
    lines = ndjson_lines(pulled.text)
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    assert (await client.post("/api/pull", json={"model": "fake", "stream": False})).json() == {
        "status": "success"
    }
    unknown = await client.post("/api/pull", json={"model": "llama3.2"})
    assert unknown.status_code == 404 and unknown.json() == {"error": "model 'llama3.2' not found"}
    refused = await client.request("DELETE", "/api/delete", json={"model": "fake"})
    assert refused.status_code == 400 and "delete its files yourself" in refused.json()["error"]
    missing = await client.request("DELETE", "/api/delete", json={"model": "nope"})
    assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}


async def test_models_from_ollamas_store_keep_their_names_system_and_parameters(tmp_path, monkeypatch):
    store = OllamaStore(tmp_path / "ollama")
    blob = gguf_file(tmp_path / "tiny.gguf", context=1024)
    store.add("tiny:latest", blob, params={"stop": ["four"], "temperature": 0.3}, system="Be terse.")
    monkeypatch.setenv("OLLAMA_MODELS", str(store.root))
    monkeypatch.setenv("RADIS_MLX_CACHE", str(tmp_path / "cache"))  # nothing pulled before
    engine = Recording(context_length=1024)
    pool_settings = PoolSettings(discover_hf_cache=False, discover_lmstudio=False)
    config = Config(server=ServerSettings(allowed_hosts=["testserver.local"]), pool=pool_settings)

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        return engine

    pool = ModelPool(config, factory=factory, discover_models=True)
    async with AsyncTestClient(app=create_app(config, pool)) as client:
        tags = (await client.get("/api/tags")).json()["models"]
        shown = (await client.post("/api/show", json={"model": "tiny"})).json()
        reply = (
            await client.post("/api/chat", json={"model": "tiny", "messages": HI, "stream": False})
        ).json()
        refused = await client.request("DELETE", "/api/delete", json={"model": "tiny"})
    assert [m["name"] for m in tags] == ["tiny:latest"] and tags[0]["details"]["format"] == "gguf"
    assert shown["system"] == "Be terse." and 'stop                           "four"' in shown["parameters"]
    assert shown["model_info"]["llama.context_length"] == 1024 and shown["details"]["family"] == "llama"
    # Its SYSTEM and PARAMETERs apply where the request sets none; the name is echoed as sent.
    request = engine.requests[-1]
    assert [(m.role, m.content) for m in request.messages] == [("system", "Be terse."), ("user", "hi")]
    assert request.stop == ["four"] and request.sampling.temperature == 0.3
    assert reply["model"] == "tiny" and reply["message"]["content"] == "one two three "
    assert refused.status_code == 400 and "ollama rm" in refused.json()["error"]


async def test_the_version_answered_is_configurable(tmp_path):
    app, _ = app_with(FakeEngine(), tmp_path, ollama_version="0.13.5")
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/api/version")).json() == {"version": "0.13.5"}
