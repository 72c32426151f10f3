"""POST /v1/responses (+ GET/DELETE by id) on a fake engine: shapes, event order, stored turns, errors."""

from __future__ import annotations

import pytest

from tests.support.sse import named_events

pytestmark = pytest.mark.anyio


async def test_response_shape_and_stored_follow_up(client):
    first = (
        await client.post("/v1/responses", json={"model": "fake", "input": "hi", "max_output_tokens": 2})
    ).json()
    assert first["object"] == "response" and first["status"] == "incomplete"
    assert first["output"][0]["content"][0]["text"] == "one two"
    assert first["usage"]["input_tokens"] == 1 and first["usage"]["output_tokens"] == 2
    stored = await client.get(f"/v1/responses/{first['id']}")
    assert stored.status_code == 200 and stored.json()["id"] == first["id"]
    body = {"model": "fake", "input": "more", "previous_response_id": first["id"], "max_output_tokens": 1}
    follow = (await client.post("/v1/responses", json=body)).json()
    assert follow["usage"]["input_tokens"] == 4  # hi + the stored reply (one two) + more
    assert (await client.delete(f"/v1/responses/{first['id']}")).json()["deleted"] is True
    assert (await client.get(f"/v1/responses/{first['id']}")).status_code == 404


async def test_stream_events_in_the_reference_order(client):
    body = {"model": "fake", "input": "hi", "max_output_tokens": 2, "stream": True}
    events = named_events((await client.post("/v1/responses", json=body)).text)
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))


async def test_a_failed_stream_is_an_error_event_and_counts_as_failed(client, fake_engine):
    fake_engine.fail_after = 1
    before = (await client.get("/api/v0/metrics")).json()["requests_failed"]
    events = named_events(
        (await client.post("/v1/responses", json={"model": "fake", "input": "hi", "stream": True})).text
    )
    assert [name for name, _ in events][-2:] == ["error", "response.failed"]
    assert "fake engine failure" in events[-2][1]["message"]
    assert (await client.get("/api/v0/metrics")).json()["requests_failed"] == before + 1


async def test_bad_input_is_a_400_naming_the_item(client):
    body = {"model": "fake", "input": [{"type": "nonsense_item"}]}
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[0].type"
    unknown = await client.post(
        "/v1/responses", json={"model": "fake", "input": "x", "previous_response_id": "r"}
    )
    assert unknown.json()["error"]["code"] == "previous_response_not_found"
