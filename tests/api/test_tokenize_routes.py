"""/tokenize and /detokenize on a fake engine: llama-server's and vLLM's fields, defaults, errors."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/tokenize", "/v1/tokenize"])
async def test_llama_server_shape_adds_no_special_tokens_by_default(client, path):
    reply = (await client.post(path, json={"model": "fake", "content": "hi there"})).json()
    assert reply["tokens"] == [2, 5] and reply["count"] == 2
    assert reply["max_model_len"] == 64 and "token_strs" not in reply
    special = (await client.post(path, json={"model": "fake", "content": "hi", "add_special": True})).json()
    assert special["tokens"] == [0, 2, 0]


async def test_vllm_shape_adds_special_tokens_by_default(client):
    reply = (await client.post("/tokenize", json={"model": "fake", "prompt": "hi there"})).json()
    assert reply["tokens"] == [0, 2, 5, 0] and reply["count"] == 4
    body = {"model": "fake", "prompt": "hi", "add_special_tokens": False, "return_token_strs": True}
    reply = (await client.post("/tokenize", json=body)).json()
    assert reply["tokens"] == [2] and reply["token_strs"] == ["hi"]


async def test_pieces(client):
    body = {"model": "fake", "content": "hi there", "with_pieces": True}
    assert (await client.post("/tokenize", json=body)).json()["tokens"] == [
        {"id": 2, "piece": "hi"},
        {"id": 5, "piece": "there"},
    ]


@pytest.mark.parametrize("path", ["/detokenize", "/v1/detokenize"])
async def test_detokenize_answers_in_both_fields(client, path):
    reply = (await client.post(path, json={"model": "fake", "tokens": [7, 8]})).json()
    assert reply == {"content": "7 8", "prompt": "7 8"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"model": "fake"}, "content"),
        ("/tokenize", {"model": "fake", "content": "a", "prompt": "b"}, "content"),
        ("/tokenize", {"model": "fake", "content": 3}, "content"),
        ("/tokenize", {"model": "fake", "content": "a", "with_pieces": "yes"}, "with_pieces"),
        ("/tokenize", {"content": "a"}, "model"),
        (
            "/tokenize",
            {"model": "fake", "prompt": "a", "messages": [{"role": "user", "content": "a"}]},
            "messages",
        ),
        ("/detokenize", {"model": "fake"}, "tokens"),
        ("/detokenize", {"model": "fake", "tokens": ["a"]}, "tokens[0]"),
        ("/detokenize", {"model": "fake", "tokens": 5}, "tokens"),
    ],
)
async def test_bad_requests_are_400(client, path, body, param):
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_unknown_model_is_404(client):
    assert (await client.post("/tokenize", json={"model": "x", "content": "a"})).status_code == 404
    assert (await client.post("/detokenize", json={"model": "x", "tokens": [1]})).status_code == 404
