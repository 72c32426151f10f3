"""Random JSON (and non-JSON) thrown at every endpoint: never a 5xx, always an error in the route's shape."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from tests.support.fakes import fake_app

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
FIELDS = [
    "messages",
    "prompt",
    "input",
    "max_tokens",
    "temperature",
    "stop",
    "n",
    "stream",
    "logit_bias",
    "encoding_format",
    "dimensions",
    "stream_options",
    "seed",
    "top_p",
    "echo",
    "tools",
    "tool_choice",
    "response_format",
    "instructions",
    "max_output_tokens",
    "previous_response_id",
    "system",
    "query",
    "documents",
    "top_n",
    "return_documents",
    "content",
    "tokens",
    "add_special",
    "with_pieces",
    # Ollama's
    "options",
    "keep_alive",
    "format",
    "think",
    "raw",
    "suffix",
    "images",
    "name",
]
# Bodies shaped like requests, with random values in the fields that matter.
REQUEST_LIKE = st.fixed_dictionaries(
    {"model": st.sampled_from(["fake", "fake-rerank", "nope", ""]) | JSON},
    optional={field: JSON for field in FIELDS},
)
ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/rerank",
    "/tokenize",
    "/detokenize",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/pull",
]


@pytest.fixture(scope="module")
def client():
    with TestClient(app=fake_app()) as test_client:
        yield test_client


def check(response, path: str = "/v1/") -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        if path.startswith("/v1/messages"):  # the Anthropic routes answer in Anthropic's error shape
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        elif path.startswith("/api/"):  # Ollama's: {"error": "..."}
            assert set(body) == {"error"} and isinstance(body["error"], str), body
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}, body


@pytest.mark.parametrize("path", ENDPOINTS)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=JSON | REQUEST_LIKE)
def test_random_json_bodies(client, path, body):
    check(client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}), path)


@pytest.mark.parametrize("path", ENDPOINTS)
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200))
def test_random_bytes(client, path, raw):
    check(client.post(path, content=raw, headers={"content-type": "application/json"}), path)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(model_id=st.text(min_size=1, max_size=40))
def test_random_model_ids(client, model_id):
    response = client.get(f"/v1/models/{quote(model_id, safe='/')}")
    check(response)
    assert response.status_code in (200, 404)
