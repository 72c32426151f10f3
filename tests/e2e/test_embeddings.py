"""/v1/embeddings on the real server with the official SDK: formats, dimensions, usage, errors, and the
same vectors on both engines (all-MiniLM on llama.cpp, converted to GGUF, and on MLX) as a numpy pass."""

from __future__ import annotations

import base64
import platform

import httpx
import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from tests.support.e2e import ENGINES
from tests.support.errors import error_of
from tests.support.numpy_bert import NumpyBert, cosine

MODEL = "minilm"  # llama.cpp; max_inputs 64, max_batch 8
STRICT = "minilm-strict"  # truncate = false, matryoshka = true
# The starter embedder on each engine (the same settings), and its truncate = false twin.
EMBEDDERS = {"llamacpp": MODEL, "mlx": "minilm-mlx"}
STRICT_EMBEDDERS = {"llamacpp": STRICT, "mlx": "minilm-strict-mlx"}
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


@pytest.fixture(scope="module")
def reference(minilm_dir) -> NumpyBert:
    return NumpyBert(minilm_dir)


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
    singles = [
        vectors(client.embeddings.create(model=MODEL, input=sentence, encoding_format="float"))[0]
        for sentence in SENTENCES
    ]
    for i, vector in enumerate(batch):
        # llama.cpp's CPU kernels are not batch-invariant: a vector moves by ~1e-5 with its batch-mates.
        assert cosine(vector, singles[i]) > 0.99999
        assert max(range(len(singles)), key=lambda j: cosine(vector, singles[j])) == i


def test_semantic_sanity(client):
    cat, kitten, earnings = vectors(client.embeddings.create(model=MODEL, input=SENTENCES[:3]))
    assert cat @ kitten > cat @ earnings


def test_both_engines_agree_with_each_other_and_with_numpy(client, reference):
    """The starter embedder: llama.cpp (a GGUF we converted, fed our token ids) and MLX give the
    vectors of an independent float64 numpy pass of the same weights, and the same usage."""
    texts = [*SENTENCES, "서울은 한국의 수도입니다.", "Press 1️⃣ to continue", "word " * 400]
    llama, mlx = (
        client.embeddings.create(model=EMBEDDERS[e], input=texts, encoding_format="float")
        for e in ENGINES[::-1]
    )
    expected = [reference.embed(t) for t in texts]
    for got in (llama, mlx):
        cosines = [cosine(v, e) for v, e in zip(vectors(got), expected, strict=True)]
        assert min(cosines) >= 0.9999, cosines
    between = [cosine(a, b) for a, b in zip(vectors(llama), vectors(mlx), strict=True)]
    assert min(between) >= 0.9999, between
    assert (
        llama.usage.prompt_tokens == mlx.usage.prompt_tokens == sum(len(reference.tokens(t)) for t in texts)
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_usage_counts_tokens_exactly(client, tokenizer, engine):
    response = client.embeddings.create(model=EMBEDDERS[engine], input=SENTENCES)
    expected = sum(len(tokenizer.encode(s).ids) for s in SENTENCES)  # [CLS] and [SEP] included
    assert response.usage.prompt_tokens == expected
    assert response.usage.total_tokens == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_token_inputs_embed_like_their_text(client, tokenizer, engine):
    embedder = EMBEDDERS[engine]
    text = SENTENCES[0]
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    from_text = vectors(client.embeddings.create(model=embedder, input=text, encoding_format="float"))[0]
    one = client.embeddings.create(model=embedder, input=ids, encoding_format="float")
    many = client.embeddings.create(model=embedder, input=[ids, ids[:2]], encoding_format="float")
    assert len(one.data) == 1 and len(many.data) == 2
    assert cosine(vectors(one)[0], from_text) > 0.99999
    assert cosine(vectors(many)[0], from_text) > 0.99999
    assert one.usage.prompt_tokens == len(ids) + 2


@pytest.mark.parametrize("engine", ENGINES)
def test_dimensions_truncate_and_renormalize(client, engine):
    strict = STRICT_EMBEDDERS[engine]
    full = vectors(client.embeddings.create(model=strict, input=SENTENCES[:2], encoding_format="float"))
    short = vectors(client.embeddings.create(model=strict, input=SENTENCES[:2], dimensions=64))
    assert short.shape == (2, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    assert np.abs(short - expected).max() < 1e-6
    # The model's own size is always accepted.
    assert len(client.embeddings.create(model=MODEL, input="x", dimensions=384).data[0].embedding) == 384


@pytest.mark.parametrize("engine", ENGINES)
def test_long_input_is_truncated_by_default(client, engine):
    response = client.embeddings.create(model=EMBEDDERS[engine], input="word " * 600)
    assert response.usage.prompt_tokens == 256  # sentence-transformers' max_seq_length


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


@pytest.mark.parametrize("engine", ENGINES)
def test_too_long_input_is_400_when_truncation_is_off(client, engine):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=STRICT_EMBEDDERS[engine], input=["fine", "word " * 600])
    error = error_of(info.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"


@pytest.mark.parametrize("engine", ENGINES)
def test_token_ids_outside_the_vocabulary_are_400_on_both_engines(server, engine):
    response = post(server, {"model": EMBEDDERS[engine], "input": [[101, 30522]]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"


def test_a_gguf_embedder_on_auto(server, client, reference):
    """all-MiniLM as a GGUF file (our converter's output): llama.cpp off Apple Silicon, MLX on it."""
    expected = "mlx" if platform.system() == "Darwin" and platform.machine() == "arm64" else "llamacpp"
    got = client.embeddings.create(model="minilm-gguf", input=SENTENCES, encoding_format="float")
    loaded = httpx.get(f"{server.base}/api/v0/models/minilm-gguf", timeout=30).json()
    assert loaded["engine"] == expected and loaded["compatibility_type"] == "gguf"
    cosines = [cosine(v, reference.embed(s)) for v, s in zip(vectors(got), SENTENCES, strict=True)]
    assert min(cosines) >= 0.9999, cosines
    # No sentence-transformers config travels in a GGUF: its limit is the 512 positions.
    assert client.embeddings.create(model="minilm-gguf", input="word " * 600).usage.prompt_tokens == 512


def test_an_llm_gguf_as_an_embedder_is_tokenized_by_its_child(client):
    """The starter LLM as kind = "embedding" (mean-pooled, tokenized by llama.cpp, cut by us) gives
    what the same GGUF as an LLM entry with embeddings = true gives, until its 64 tokens run out."""
    texts = ["A cat sits on the mat", "Quarterly earnings report"]
    embedder = client.embeddings.create(model="smollm2-embedder", input=texts, encoding_format="float")
    llm = client.embeddings.create(model="smollm2-embed-llamacpp", input=texts, encoding_format="float")
    assert min(cosine(a, b) for a, b in zip(vectors(embedder), vectors(llm), strict=True)) >= 0.9999
    assert embedder.usage.prompt_tokens == llm.usage.prompt_tokens
    assert client.embeddings.create(model="smollm2-embedder", input="word " * 200).usage.prompt_tokens == 64


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
