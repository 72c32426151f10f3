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


async def test_a_pull_whose_client_leaves_stops_downloading(tmp_path):
    """Closing the pull's event stream (what Litestar does when its client disconnects) cancels it."""
    import asyncio
    import threading

    from radis_mlx.api.admin import _pull_events
    from radis_mlx.config import Config
    from radis_mlx.pool import ModelPool
    from tests.support.fakes import FakeEngine

    async def factory(model_id, entry):
        return FakeEngine()

    pool = ModelPool(Config(), factory=factory)
    seen: list[bool] = []
    downloading = threading.Event()

    def slow_download(source, progress=None, cancel=None):
        downloading.set()
        seen.append(cancel is not None and cancel.wait(10))
        raise RuntimeError("cancelled")

    pool.store.materialize = slow_download
    events = _pull_events(pool, "hf:org/repo/model.gguf")
    assert b'"pulling"' in await anext(events)
    waiting = asyncio.ensure_future(anext(events))
    assert await asyncio.to_thread(downloading.wait, 5)
    waiting.cancel()  # the client went away
    await asyncio.gather(waiting, return_exceptions=True)
    await events.aclose()
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == [True]
