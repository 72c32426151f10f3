"""/v1/rerank (and its other paths) on a fake engine: shape, order, top_n, documents, limits, errors."""

from __future__ import annotations

import math

import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.pool import ModelPool
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.anyio

DOCUMENTS = ["red apple", "green apple tree", "blue sky", "apple"]  # fake scores: 1, 2, 0, 1


@pytest.fixture
async def client(tmp_path):
    models = {
        "ranker": ModelEntry(source=str(tmp_path), kind="rerank", max_inputs=4),
        "embed": ModelEntry(source=str(tmp_path), kind="embedding"),
        "chat": ModelEntry(source=str(tmp_path)),
    }
    config = Config(server=ServerSettings(allowed_hosts=["testserver.local"]), models=models)

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        engine = FakeEngine()
        await engine.start()
        return engine

    async with AsyncTestClient(app=create_app(config, ModelPool(config, factory=factory))) as test_client:
        yield test_client


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v1/reranking"])
async def test_results_sorted_by_relevance_with_usage(client, path):
    body = {"model": "ranker", "query": "green apple", "documents": DOCUMENTS}
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["object"] == "list" and reply["model"] == "ranker" and reply["id"].startswith("rerank-")
    # Sorted by score, ties in the documents' order; scores are the logits' sigmoid.
    assert [r["index"] for r in reply["results"]] == [1, 0, 3, 2]
    assert [r["relevance_score"] for r in reply["results"]] == pytest.approx(
        [sigmoid(s) for s in (2, 1, 1, 0)]
    )
    assert all("document" not in r for r in reply["results"])
    assert reply["usage"] == {"prompt_tokens": 2 * 4 + 8, "total_tokens": 16}  # query + document words


async def test_top_n_return_documents_raw_scores_and_document_objects(client):
    documents = [{"text": d} for d in DOCUMENTS]
    body = {"model": "ranker", "query": "green apple", "documents": documents, "top_n": 2}
    body |= {"return_documents": True, "raw_scores": True}
    results = (await client.post("/v1/rerank", json=body)).json()["results"]
    assert results == [
        {"index": 1, "relevance_score": 2.0, "document": {"text": "green apple tree"}},
        {"index": 0, "relevance_score": 1.0, "document": {"text": "red apple"}},
    ]


async def test_llama_server_texts_field(client):
    body = {"model": "ranker", "query": "sky", "texts": ["blue sky", "apple"], "top_n": 10}
    results = (await client.post("/rerank", json=body)).json()["results"]
    assert [r["index"] for r in results] == [0, 1]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "ranker", "documents": ["a"]}, "query", None),
        ({"model": "ranker", "query": "", "documents": ["a"]}, "query", None),
        ({"model": "ranker", "query": "q"}, "documents", None),
        ({"model": "ranker", "query": "q", "documents": []}, "documents", None),
        ({"model": "ranker", "query": "q", "documents": ["a"] * 5}, "documents", None),
        ({"model": "ranker", "query": "q", "documents": [1]}, "documents[0]", None),
        ({"model": "ranker", "query": "q", "documents": [{"txt": "a"}]}, "documents[0].text", None),
        ({"model": "ranker", "query": "q", "documents": ["a"], "top_n": 0}, "top_n", None),
        ({"model": "ranker", "query": ["q"], "documents": ["a"]}, "query", None),
        ({"model": "embed", "query": "q", "documents": ["a"]}, "model", "model_not_reranker"),
        ({"model": "chat", "query": "q", "documents": ["a"]}, "model", "model_not_reranker"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(client, body, param, code):
    response = await client.post("/v1/rerank", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code


async def test_unknown_model_is_404_and_embeddings_refuse_a_reranker(client):
    response = await client.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": ["a"]})
    assert response.status_code == 404
    response = await client.post("/v1/embeddings", json={"model": "ranker", "input": "a"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "model_not_embedding"
