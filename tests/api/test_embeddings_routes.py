"""/v1/embeddings on a fake engine: response shape, encodings, dimensions, limits."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.pool import ModelPool
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tmp_path):
    engine = FakeEngine()
    models = {
        "embed": ModelEntry(source=str(tmp_path), kind="embedding", max_inputs=3),
        "nested": ModelEntry(source=str(tmp_path), kind="embedding", matryoshka=True),
        "chat": ModelEntry(source=str(tmp_path)),
    }
    config = Config(server=ServerSettings(allowed_hosts=["testserver.local"]), models=models)

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        await engine.start()
        return engine

    app = create_app(config, ModelPool(config, factory=factory))
    async with AsyncTestClient(app=app) as test_client:
        test_client.engine = engine  # type: ignore[attr-defined]
        yield test_client


async def test_shape_order_and_usage(client):
    response = await client.post("/v1/embeddings", json={"model": "embed", "input": ["a", "b c"]})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "embed"
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert body["data"] == [
        {"embedding": [3.0, 4.0, 0.0, 0.0], "index": 0, "object": "embedding"},
        {"embedding": [6.0, 8.0, 0.0, 0.0], "index": 1, "object": "embedding"},
    ]


async def test_base64_is_little_endian_float32(client):
    body = {"model": "embed", "input": "a", "encoding_format": "base64"}
    encoded = (await client.post("/v1/embeddings", json=body)).json()["data"][0]["embedding"]
    assert np.frombuffer(base64.b64decode(encoded), dtype="<f4").tolist() == [3.0, 4.0, 0.0, 0.0]


async def test_dimensions_truncate_and_renormalize_on_matryoshka_entries(client):
    body = {"model": "nested", "input": [[1, 2]], "dimensions": 2}
    data = (await client.post("/v1/embeddings", json=body)).json()["data"]
    assert data[0]["embedding"] == pytest.approx([0.6, 0.8])
    refused = await client.post("/v1/embeddings", json={**body, "model": "embed"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "dimensions"


async def test_limits_and_models_that_cannot_embed(client):
    too_many = await client.post("/v1/embeddings", json={"model": "embed", "input": ["a"] * 4})
    assert too_many.status_code == 400 and "at most 3" in too_many.json()["error"]["message"]
    chat = await client.post("/v1/embeddings", json={"model": "chat", "input": "a"})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "model_not_embedding"
    assert client.engine.started == 0  # refused before loading anything
