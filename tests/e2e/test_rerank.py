"""/v1/rerank on the real server: a tiny random cross-encoder on both engines, scored as transformers
scores it (a float64 numpy pass of the same weights, the document in segment 1), and its 400s."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from tests.support.e2e import ENGINES, TINY_RERANKER
from tests.support.numpy_bert import NumpyBert

QUERY = "How many people live in Berlin?"
DOCUMENTS = [
    "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
    "Berlin is well known for its museums.",
    "New York City is famous for the Metropolitan Museum of Art.",
    "서울은 한국의 수도입니다.",
    "",
    "a long document " * 100,  # cut to fit the cross-encoder's 128 tokens per pair
]


@pytest.fixture(scope="module")
def reference(server) -> NumpyBert:
    return NumpyBert(server.config_path.parent / TINY_RERANKER)


def rerank(server, body: dict, path: str = "/v1/rerank") -> httpx.Response:
    return httpx.post(f"{server.base}{path}", json=body, timeout=120)


@pytest.mark.parametrize("engine", ENGINES)
def test_scores_are_what_transformers_computes(server, reference, engine):
    body = {"model": f"reranker-{engine}", "query": QUERY, "documents": DOCUMENTS, "raw_scores": True}
    reply = rerank(server, body).json()
    expected = [reference.score(QUERY, d) for d in DOCUMENTS]
    got = {r["index"]: r["relevance_score"] for r in reply["results"]}
    # llama.cpp's GELU is ggml's tanh approximation: ~1e-3 on scores of a few units.
    assert max(abs(got[i] - e) for i, e in enumerate(expected)) < 2e-3, (got, expected)
    assert [r["index"] for r in reply["results"]] == sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])
    assert reply["usage"]["prompt_tokens"] == sum(len(reference.pair(QUERY, d)[0]) for d in DOCUMENTS)
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"]


def test_both_engines_give_the_same_answer(server):
    body = {"query": QUERY, "documents": DOCUMENTS, "top_n": 3, "return_documents": True}
    llama, mlx = (rerank(server, {**body, "model": f"reranker-{e}"}).json() for e in ("llamacpp", "mlx"))
    assert [r["index"] for r in llama["results"]] == [r["index"] for r in mlx["results"]]
    for a, b in zip(llama["results"], mlx["results"], strict=True):
        assert 0 < a["relevance_score"] < 1 and abs(a["relevance_score"] - b["relevance_score"]) < 1e-3
        assert a["document"] == b["document"] == {"text": DOCUMENTS[a["index"]]}
    assert llama["usage"] == mlx["usage"]


@pytest.mark.parametrize("path", ["/rerank", "/v1/reranking"])
def test_llama_server_paths_and_its_texts_field(server, reference, path):
    reply = rerank(
        server, {"model": "reranker-llamacpp", "query": QUERY, "texts": DOCUMENTS[:2]}, path
    ).json()
    logits = [reference.score(QUERY, d) for d in DOCUMENTS[:2]]
    got = {r["index"]: r["relevance_score"] for r in reply["results"]}
    assert all(abs(got[i] - 1 / (1 + math.exp(-x))) < 1e-3 for i, x in enumerate(logits))


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "reranker-mlx", "query": "", "documents": ["a"]}, "query", None),
        ({"model": "reranker-llamacpp", "documents": ["a"]}, "query", None),
        ({"model": "reranker-llamacpp", "query": "q", "documents": []}, "documents", None),
        ({"model": "reranker-llamacpp", "query": "q", "documents": ["a"] * 17}, "documents", None),
        ({"model": "reranker-mlx", "query": "q", "documents": [None]}, "documents[0]", None),
        (
            {"model": "reranker-llamacpp", "query": "word " * 200, "documents": ["a"]},
            "query",
            "context_length_exceeded",
        ),
        (
            {"model": "reranker-strict", "query": "q", "documents": ["a", "b " * 200]},
            "documents",
            "context_length_exceeded",
        ),
        ({"model": "minilm", "query": "q", "documents": ["a"]}, "model", "model_not_reranker"),
        ({"model": "smollm2-llamacpp", "query": "q", "documents": ["a"]}, "model", "model_not_reranker"),
    ],
)
def test_bad_requests_are_400(server, body, param, code):
    response = rerank(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert code is None or error["code"] == code


@pytest.mark.parametrize("engine", ENGINES)
def test_a_reranker_makes_no_embeddings(client, server, engine):
    response = httpx.post(
        f"{server.url}/embeddings", json={"model": f"reranker-{engine}", "input": "x"}, timeout=60
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "model_not_embedding"
    # And it still ranks afterwards.
    reply = rerank(server, {"model": f"reranker-{engine}", "query": "q", "documents": ["a", "b"]}).json()
    assert len(reply["results"]) == 2 and np.isfinite([r["relevance_score"] for r in reply["results"]]).all()
