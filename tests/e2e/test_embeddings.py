"""/v1/embeddings on the real server with the official SDK: formats, dimensions, usage, errors."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from tests.support.e2e import ENGINES
from tests.support.errors import error_of

MODEL = "minilm"  # max_inputs 64, max_batch 8
STRICT = "minilm-strict"  # truncate = false, matryoshka = true
SENTENCES = [
    "A cat sits on the mat",
    "A kitten rests on a rug",
    "Quarterly earnings report",
    "hi",
    "The quick brown fox jumps over the lazy dog, twice, and then takes a long nap in the sun.",
    "Le chat est assis sur le tapis.",
    "東京は日本の首都です。",
    "3.14159 26535 89793",
    "A long sentence " + "that keeps going " * 20,
    "ok",
]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tokenizer.no_padding()  # this tokenizer.json pads every text to 128 tokens
    tokenizer.no_truncation()
    return tokenizer


def vectors(response) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float64)


def post(server, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/embeddings", json=body, timeout=120)


def test_sdk_default_base64_equals_float(client):
    default = client.embeddings.create(model=MODEL, input=SENTENCES[:3])  # the SDK asks for base64
    floats = client.embeddings.create(model=MODEL, input=SENTENCES[:3], encoding_format="float")
    assert default.object == "list" and default.model == MODEL
    assert [(d.object, d.index) for d in default.data] == [("embedding", i) for i in range(3)]
    # Both carry the same float32 values, bit for bit.
    assert np.array_equal(vectors(default), vectors(floats))
    assert vectors(floats).shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors(floats), axis=1), 1, atol=1e-5)


def test_base64_on_the_wire_is_little_endian_float32(server, client):
    raw = post(server, {"model": MODEL, "input": "hello", "encoding_format": "base64"}).json()
    encoded = raw["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    floats = client.embeddings.create(model=MODEL, input="hello", encoding_format="float")
    assert decoded.tolist() == floats.data[0].embedding


def test_batch_keeps_input_order(client):
    batch = vectors(client.embeddings.create(model=MODEL, input=SENTENCES, encoding_format="float"))
    for i, sentence in enumerate(SENTENCES):
        single = client.embeddings.create(model=MODEL, input=sentence, encoding_format="float")
        assert np.abs(batch[i] - vectors(single)[0]).max() < 1e-5


def test_semantic_sanity(client):
    cat, kitten, earnings = vectors(client.embeddings.create(model=MODEL, input=SENTENCES[:3]))
    assert cat @ kitten > cat @ earnings


def test_usage_counts_tokens_exactly(client, tokenizer):
    response = client.embeddings.create(model=MODEL, input=SENTENCES)
    expected = sum(len(tokenizer.encode(s).ids) for s in SENTENCES)  # [CLS] and [SEP] included
    assert response.usage.prompt_tokens == expected
    assert response.usage.total_tokens == expected


def test_token_inputs_embed_like_their_text(client, tokenizer):
    text = SENTENCES[0]
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    from_text = vectors(client.embeddings.create(model=MODEL, input=text, encoding_format="float"))[0]
    one = client.embeddings.create(model=MODEL, input=ids, encoding_format="float")
    many = client.embeddings.create(model=MODEL, input=[ids, ids[:2]], encoding_format="float")
    assert len(one.data) == 1 and len(many.data) == 2
    assert np.abs(vectors(one)[0] - from_text).max() < 1e-5
    assert np.abs(vectors(many)[0] - from_text).max() < 1e-5
    assert one.usage.prompt_tokens == len(ids) + 2


def test_dimensions_truncate_and_renormalize(client):
    full = vectors(client.embeddings.create(model=STRICT, input=SENTENCES[:2], encoding_format="float"))
    short = vectors(client.embeddings.create(model=STRICT, input=SENTENCES[:2], dimensions=64))
    assert short.shape == (2, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    assert np.abs(short - expected).max() < 1e-6
    # The model's own size is always accepted.
    assert len(client.embeddings.create(model=MODEL, input="x", dimensions=384).data[0].embedding) == 384


def test_long_input_is_truncated_by_default(client):
    response = client.embeddings.create(model=MODEL, input="word " * 600)
    assert response.usage.prompt_tokens == 256


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": ""}, "input"),
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": [[]]}, "input"),
        ({"model": MODEL, "input": ["ok", ""]}, "input"),
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": [1.5]}, "input[0]"),
        ({"model": MODEL, "input": ["a", 1]}, "input"),
        ({"model": MODEL, "input": {"text": "a"}}, "input"),
        ({"model": MODEL, "input": ["x"] * 65}, "input"),
        ({"model": MODEL, "input": [[101, 999_999]]}, "input"),
        ({"model": MODEL, "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": MODEL, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": MODEL, "input": "x", "dimensions": 64}, "dimensions"),  # not a matryoshka entry
        ({"model": STRICT, "input": "x", "dimensions": 385}, "dimensions"),
        ({"model": 7, "input": "x"}, "model"),
    ],
)
def test_bad_requests_are_400_with_param(server, body, param):
    response = post(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_too_long_input_is_400_when_truncation_is_off(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=STRICT, input=["fine", "word " * 600])
    error = error_of(info.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-model", input="x")
    assert error_of(info.value)["code"] == "model_not_found"


def test_chat_model_cannot_embed_and_embedding_model_cannot_chat(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=model, input="x")
    assert error_of(info.value)["param"] == "model"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert error_of(info.value)["param"] == "model"
    # And the server still serves both.
    assert len(client.embeddings.create(model=MODEL, input="still here").data) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_llm_entry_with_embeddings_enabled_mean_pools_hidden_states(client, engine):
    model = f"smollm2-embed-{engine}"
    texts = ["A cat sits on the mat", "Quarterly earnings report"]
    batch = client.embeddings.create(model=model, input=texts, encoding_format="float")
    single = client.embeddings.create(model=model, input=texts[1], encoding_format="float")
    assert vectors(batch).shape == (2, 576)  # SmolLM2-135M's hidden size
    assert np.allclose(np.linalg.norm(vectors(batch), axis=1), 1, atol=1e-5)
    assert np.abs(vectors(batch)[1] - vectors(single)[0]).max() < 1e-5
    assert batch.usage.prompt_tokens > single.usage.prompt_tokens > 0
    # The same model still chats.
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.usage.completion_tokens >= 1


def test_llm_embeddings_agree_across_engines(client):
    """Same weights, same mean pooling: MLX and llama.cpp vectors point the same way (the engines'
    matmul precision differs, see test_parity, so not bit for bit)."""
    texts = ["A cat sits on the mat", "Quarterly earnings report", "The capital of France is Paris."]
    mlx, llama = (
        client.embeddings.create(model=f"smollm2-embed-{engine}", input=texts, encoding_format="float")
        for engine in ("mlx", "llamacpp")
    )
    cosines = (vectors(mlx) * vectors(llama)).sum(axis=1)
    assert cosines.min() > 0.99, cosines
    assert mlx.usage.prompt_tokens == llama.usage.prompt_tokens
