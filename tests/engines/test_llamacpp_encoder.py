"""The llama.cpp encoder engine against the numpy reference: embeddings, fitting, token ids, rerank.

Each engine is a real child (the xllamacpp wheel's server) fed token ids the engine made itself.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from radis_mlx.config import LlamaCppSettings
from radis_mlx.engines.llamacpp.encoder import LlamaCppEncoderEngine
from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError, UnsupportedModelError
from tests.support.numpy_bert import NumpyBert, cosine

pytestmark = pytest.mark.anyio

SENTENCES = [
    "A cat sits on the mat",
    "naïve café owners in Zürich don't serve crème brûlée after 10pm!",
    "東京は日本の首都です。 Tokyo is the capital of Japan.",
    "I love pizza 🍕 and sushi 🍣!!!",
    # Where llama.cpp's own WordPiece splits unlike Hugging Face's (docs/COMPATIBILITY.md): Hangul,
    # a word over 100 characters, a keycap emoji. The engine tokenizes, so these match too.
    "서울은 한국의 수도입니다. Seoul is the capital of Korea.",
    "x" * 130,
    "Press 1️⃣ to continue",
    "overflow " * 300,  # past the model's 256 tokens: cut, keeping [SEP]
]


def engine(path, kind="embedding", *, truncate=True, cache_dir, context_length=None):
    return LlamaCppEncoderEngine(
        "test",
        path,
        kind=kind,
        context_length=context_length,
        settings=LlamaCppSettings(threads=1),
        max_batch=4,
        truncate=truncate,
        cache_dir=cache_dir,
    )


@pytest.fixture(scope="module")
def reference(minilm_dir) -> NumpyBert:
    return NumpyBert(minilm_dir)


@pytest.fixture(scope="module")
async def minilm(minilm_dir, tmp_path_factory):
    running = engine(minilm_dir, cache_dir=tmp_path_factory.mktemp("cache"))
    await running.start()
    yield running
    await running.close()


async def test_a_folder_is_converted_and_matches_the_reference(minilm, reference):
    result = await minilm.embed(SENTENCES)
    cosines = [cosine(v, reference.embed(s)) for v, s in zip(result.vectors, SENTENCES, strict=True)]
    assert min(cosines) >= 0.9999, cosines
    assert result.prompt_tokens == sum(len(reference.tokens(s)) for s in SENTENCES)
    assert minilm.info.context_length == 256 and minilm.info.details["task"] == "embedding"
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1, atol=1e-5)  # its Normalize module


async def test_the_encoder_child_answers_only_its_engine(minilm):
    """The child has a random key (LLAMA_API_KEY) that only the engine holds, as an LLM's child does:
    without it, nothing but /health; its port is not published."""
    assert "port" not in minilm.info.details
    async with httpx.AsyncClient(base_url=minilm.child.base_url, trust_env=False, timeout=30) as child:
        assert (await child.post("/v1/embeddings", json={"input": [[101, 102]]})).status_code == 401
        assert (await child.post("/tokenize", json={"content": "a"})).status_code == 401
        assert (await child.get("/health")).status_code == 200
    assert len((await minilm.embed(["a"])).vectors) == 1  # the engine itself gets through


async def test_token_ids_embed_like_their_text_and_are_checked(minilm, reference):
    text = SENTENCES[1]
    bare = reference.tokenizer.encode(text, add_special_tokens=False).ids
    result = await minilm.embed([bare, reference.tokenizer.encode(text).ids])
    expected = (await minilm.embed([text])).vectors[0]
    assert all(cosine(v, expected) > 0.999999 for v in result.vectors)
    with pytest.raises(InvalidRequestError, match="outside the vocabulary") as caught:
        await minilm.embed([[101, 30522]])
    assert caught.value.param == "input"


async def test_tokenize_and_detokenize_use_the_model_tokenizer(minilm, reference):
    tokens = await minilm.tokenize(SENTENCES[4], add_special=True, with_pieces=True)
    assert tokens.ids == reference.tokenizer.encode(SENTENCES[4]).ids
    assert tokens.pieces == [reference.tokenizer.id_to_token(i).encode() for i in tokens.ids]
    assert await minilm.detokenize(tokens.ids[1:-1]) == reference.tokenizer.decode(tokens.ids[1:-1])


async def test_no_truncation_is_a_400(minilm_dir, tmp_path):
    strict = engine(minilm_dir, truncate=False, cache_dir=tmp_path)
    await strict.start()
    try:
        with pytest.raises(ContextLengthExceeded, match=r"input\[1\] has 602 tokens"):
            await strict.embed(["fine", "overflow " * 300])
        assert len((await strict.embed(["fine"])).vectors) == 1
    finally:
        await strict.close()


async def test_a_gguf_source_is_served_as_it_is(minilm_gguf, reference, tmp_path):
    direct = engine(minilm_gguf, cache_dir=tmp_path, context_length=300)
    await direct.start()
    try:
        assert direct.info.details["format"] == "gguf" and direct.info.context_length == 300
        result = await direct.embed(SENTENCES[:-1])
        cosines = [cosine(v, reference.embed(s)) for v, s in zip(result.vectors, SENTENCES, strict=False)]
        assert min(cosines) >= 0.9999, cosines
        assert (await direct.embed(["overflow " * 300])).prompt_tokens == 300  # its context_length
    finally:
        await direct.close()
    assert not (tmp_path / "bert-gguf").exists()  # nothing converted


QUERY = "How many people live in Berlin?"
DOCUMENTS = [
    "Berlin has a population of 3,520,031 registered inhabitants.",
    "Berlin is well known for its museums.",
    "New York City is famous for the Metropolitan Museum of Art.",
    "",
    "a long document " * 100,
]


async def test_rerank_computes_what_transformers_computes(tiny_reranker, tmp_path):
    reference = NumpyBert(tiny_reranker)
    ranker = engine(tiny_reranker, "rerank", cache_dir=tmp_path)
    await ranker.start()
    try:
        result = await ranker.rerank(QUERY, DOCUMENTS)
        expected = [reference.score(QUERY, d) for d in DOCUMENTS]
        # ggml's GELU is the tanh approximation: ~1e-3 on these scores of a few units.
        assert np.abs(np.array(result.scores) - expected).max() < 2e-3, (result.scores, expected)
        zeros = [reference.score(QUERY, d, segments="zeros") for d in DOCUMENTS]
        assert np.abs(np.array(result.scores) - zeros).max() > 0.05  # the second segment is segment 1
        assert result.prompt_tokens == sum(len(reference.pair(QUERY, d)[0]) for d in DOCUMENTS)
        with pytest.raises(InvalidRequestError, match="reranker"):
            await ranker.embed(["the child's vectors are no embeddings"])
    finally:
        await ranker.close()


async def test_kind_must_match_the_model(tiny_reranker, minilm_gguf, tmp_path):
    for path, kind in ((tiny_reranker, "embedding"), (minilm_gguf, "rerank")):
        with pytest.raises(UnsupportedModelError):
            await engine(path, kind, cache_dir=tmp_path).start()
