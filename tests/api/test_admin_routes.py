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


async def test_activity_logs_each_inference_request_and_its_tokens(client):
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 3, "n": 2}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    missing = {"model": "nope" * 100, "messages": [{"role": "user", "content": "x"}]}
    assert (await client.post("/v1/chat/completions", json=missing)).status_code == 404
    await client.get("/v1/models")  # reads are not logged
    activity = (await client.get("/api/v0/activity")).json()
    failed, served = activity["requests"]  # newest first
    assert served["route"] == "/v1/chat/completions" and served["method"] == "POST"
    assert served["model"] == "fake" and served["status"] == 200 and not served["failed"]
    assert served["completion_tokens"] == 6  # two choices of three
    assert served["prompt_tokens"] == 2 * 2 and served["cached_tokens"] == 0
    assert 0 <= served["ttft_seconds"] <= served["duration_seconds"]
    assert failed["status"] == 404 and failed["failed"] and failed["completion_tokens"] is None
    assert failed["model"] == ("nope" * 100)[:200]  # names are cut: the log stays bounded
    buckets = activity["buckets"]
    assert len(buckets) == 120 and activity["interval_seconds"] == 5
    assert sum(b["requests"] for b in buckets) == 2 and sum(b["failed"] for b in buckets) == 1
    assert sum(b["tokens"] for b in buckets) == pytest.approx(6)
    assert buckets[-1]["start"] > buckets[0]["start"]


async def test_the_request_log_keeps_the_last_hundred(client):
    body = {"model": "fake", "prompt": "a", "max_tokens": 1}
    for _ in range(103):
        await client.post("/v1/completions", json=body)
    requests = (await client.get("/api/v0/activity")).json()["requests"]
    assert len(requests) == 100 and all(r["route"] == "/v1/completions" for r in requests)
    assert requests[0]["time"] >= requests[-1]["time"]


async def test_loaded_models_report_their_queue(client):
    await client.post("/api/v0/models/load", json={"model": "fake"})
    loaded = (await client.get("/api/v0/models/loaded")).json()["data"][0]
    assert loaded["queued_requests"] == 0 and loaded["active_requests"] == 0


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
