"""GET /v1/models on a fake engine."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_models_list_and_retrieve(client):
    listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["fake"]
    assert listing["data"][0]["object"] == "model"
    model = await client.get("/v1/models/fake")
    assert model.status_code == 200 and model.json()["id"] == "fake"
    missing = await client.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
