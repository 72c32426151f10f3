"""The management API under /api/v0 and the metrics on a fake engine."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_load_list_loaded_and_unload(client, fake_engine):
    listed = (await client.get("/api/v0/models")).json()["data"]
    assert [m["id"] for m in listed] == ["fake"] and listed[0]["state"] == "not-loaded"
    loaded = await client.post("/api/v0/models/load", json={"model": "fake"})
    assert loaded.status_code == 200 and fake_engine.started == 1
    assert [m["id"] for m in (await client.get("/api/v0/models/loaded")).json()["data"]] == ["fake"]
    assert (await client.get("/api/v0/models/fake")).json()["state"] == "loaded"
    unloaded = await client.post("/api/v0/models/unload", json={"model": "fake"})
    assert unloaded.status_code == 200 and fake_engine.closed == 1
    assert (await client.get("/api/v0/models/loaded")).json()["data"] == []


async def test_unknown_models_are_404s_and_metrics_count_requests(client):
    missing = await client.post("/api/v0/models/load", json={"model": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    await client.post("/v1/chat/completions", json=body)
    metrics = (await client.get("/api/v0/metrics")).json()
    assert metrics["requests_served"] == 1 and metrics["tokens_generated"] == 2
    assert metrics["models_loaded"] == 1
