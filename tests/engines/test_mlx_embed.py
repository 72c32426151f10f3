"""The MLX encoder engine against an independent reference: BERT written out in plain numpy.

The reference (tests/support/numpy_bert.py) reads the same safetensors and tokenizer.json, runs in
float64 with the exact (erf) GELU, and pools as the folder's sentence-transformers config says; for
the cross-encoder it scores transformers' head with the document's segment ids.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from radis_mlx.engines.mlx.embed import MlxEmbedEngine
from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError, UnsupportedModelError
from tests.support.numpy_bert import NumpyBert, cosine

pytestmark = pytest.mark.anyio

SENTENCES = [
    "A cat sits on the mat",
    "A kitten rests on a rug",
    "Quarterly earnings report",
    "The quick brown fox jumps over the lazy dog.",
    "hello",
    "I",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "MLX is an array framework for machine learning on Apple silicon.",
    "Le chat est assis sur le tapis.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Emoji test 🚀🔥 with symbols: #$%&*()",
    "3.14159 26535 89793 23846 26433 83279",
    "def embed(inputs: list[str]) -> list[list[float]]: return []",
    "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
    "UPPERCASE SHOUTING AND lowercase whispering",
    "   leading and trailing whitespace   ",
    "Antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis",
    "The mitochondria is the powerhouse of the cell, as every biology student learns early on.",
    "A long sentence " + "that keeps going and going " * 12 + "until it finally stops.",
    # Past the model's 256 tokens: the engine truncates, and so does the reference below.
    "overflow " * 300,
]


@pytest.fixture(scope="module")
def reference(minilm_dir) -> NumpyBert:
    return NumpyBert(minilm_dir)


@pytest.fixture
async def engine(minilm_dir):
    engine = MlxEmbedEngine("minilm", minilm_dir, context_length=None, max_batch=8, truncate=True)
    await engine.start()
    yield engine
    await engine.close()


async def test_matches_the_numpy_reference(engine, reference):
    result = await engine.embed(SENTENCES)
    cosines = [cosine(v, reference.embed(s)) for v, s in zip(result.vectors, SENTENCES, strict=True)]
    assert min(cosines) >= 0.9999, cosines
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in result.vectors)
    assert result.prompt_tokens == sum(len(reference.tokens(s)) for s in SENTENCES)


async def test_batched_equals_single(engine):
    batched = np.array((await engine.embed(SENTENCES)).vectors)
    single = np.array([(await engine.embed([s])).vectors[0] for s in SENTENCES])
    assert np.abs(batched - single).max() < 1e-5


async def test_semantic_sanity(engine):
    cat, kitten, earnings = (await engine.embed(SENTENCES[:3])).vectors
    assert cosine(cat, kitten) > cosine(cat, earnings) + 0.3


async def test_token_ids_embed_like_their_text(engine, reference):
    text = SENTENCES[3]
    bare = reference.tokenizer.encode(text, add_special_tokens=False).ids
    with_specials = reference.tokenizer.encode(text).ids
    result = await engine.embed([bare, with_specials])
    expected = (await engine.embed([text])).vectors[0]
    # The model's [CLS]/[SEP] are added to bare ids, and not added twice.
    assert all(cosine(v, expected) > 0.999999 for v in result.vectors)
    assert result.prompt_tokens == 2 * len(with_specials)


async def test_token_ids_outside_the_vocabulary_are_a_request_error(engine):
    with pytest.raises(InvalidRequestError, match="outside the vocabulary") as caught:
        await engine.embed([[101, 30522]])
    assert caught.value.param == "input"


async def test_too_long_input_is_refused_when_truncation_is_off(minilm_dir):
    engine = MlxEmbedEngine("minilm", minilm_dir, context_length=None, max_batch=8, truncate=False)
    await engine.start()
    try:
        with pytest.raises(
            ContextLengthExceeded, match=r"input\[1\] has 602 tokens; this model.s maximum is 256"
        ):
            await engine.embed(["short", "overflow " * 300])
        assert len((await engine.embed(["short"])).vectors[0]) == 384
    finally:
        await engine.close()


async def test_reports_what_it_loaded(engine):
    assert engine.info.context_length == 256
    assert engine.info.details["pooling"] == "mean_tokens"
    assert engine.info.details["dimensions"] == "384"


async def test_concurrent_requests_share_batches_and_keep_their_own_results(engine):
    requests = [SENTENCES[i : i + 3] for i in range(0, 12, 3)]
    together = await asyncio.gather(*(engine.embed(r) for r in requests))
    for request, result in zip(requests, together, strict=True):
        alone = await engine.embed(request)
        assert np.abs(np.array(result.vectors) - np.array(alone.vectors)).max() < 1e-5
        assert result.prompt_tokens == alone.prompt_tokens


async def test_one_bad_request_does_not_fail_the_others_it_waited_with(engine):
    good, bad = await asyncio.gather(
        engine.embed(["fine"]), engine.embed([[101, 30522]]), return_exceptions=True
    )
    assert len(good.vectors) == 1 and isinstance(bad, InvalidRequestError)


async def test_tokenize_and_detokenize(engine, reference):
    text = "Hello world, ünïcödé!"
    tokens = await engine.tokenize(text, add_special=True, with_pieces=True)
    assert tokens.ids == reference.tokenizer.encode(text).ids
    assert tokens.pieces == [reference.tokenizer.id_to_token(i).encode() for i in tokens.ids]
    assert tokens.pieces[0] == b"[CLS]" and tokens.pieces[-1] == b"[SEP]"
    bare = await engine.tokenize(text, add_special=False)
    assert bare.ids == tokens.ids[1:-1] and bare.pieces is None
    assert await engine.detokenize(bare.ids) == reference.tokenizer.decode(bare.ids)


async def test_a_gguf_embedder_converted_to_mlx_matches_the_reference(minilm_gguf, reference, tmp_path):
    engine = MlxEmbedEngine(
        "gguf", minilm_gguf, context_length=None, max_batch=8, truncate=True, cache_dir=tmp_path
    )
    await engine.start()
    try:
        result = await engine.embed(SENTENCES[:-1])
        # The GGUF knows no sentence-transformers max_seq_length: its limit is the 512 positions.
        assert engine.info.context_length == 512 and engine.info.details["format"] == "gguf"
        cosines = [cosine(v, reference.embed(s)) for v, s in zip(result.vectors, SENTENCES, strict=False)]
        assert min(cosines) >= 0.9999, cosines
        assert result.prompt_tokens == sum(len(reference.tokenizer.encode(s).ids) for s in SENTENCES[:-1])
    finally:
        await engine.close()
    assert len(list((tmp_path / "gguf-mlx").iterdir())) == 1  # converted once, into the cache


@pytest.fixture(scope="module")
def cross_encoder(tiny_reranker) -> NumpyBert:
    return NumpyBert(tiny_reranker)


QUERY = "How many people live in Berlin?"
DOCUMENTS = [
    "Berlin has a population of 3,520,031 registered inhabitants.",
    "Berlin is well known for its museums.",
    "New York City is famous for the Metropolitan Museum of Art.",
    "",
    "a long document " * 100,  # cut to fit the 128 tokens of a pair
]


async def test_rerank_scores_what_transformers_computes(tiny_reranker, cross_encoder):
    engine = MlxEmbedEngine(
        "rank", tiny_reranker, kind="rerank", context_length=None, max_batch=2, truncate=True
    )
    await engine.start()
    try:
        result = await engine.rerank(QUERY, DOCUMENTS)
        expected = [cross_encoder.score(QUERY, d) for d in DOCUMENTS]
        assert np.abs(np.array(result.scores) - expected).max() < 1e-4, (result.scores, expected)
        # Not what the all-zero segment ids of llama.cpp's own GGUFs would give.
        zeros = [cross_encoder.score(QUERY, d, segments="zeros") for d in DOCUMENTS]
        assert np.abs(np.array(result.scores) - zeros).max() > 0.05
        assert result.prompt_tokens == sum(len(cross_encoder.pair(QUERY, d)[0]) for d in DOCUMENTS)
        with pytest.raises(InvalidRequestError, match="reranker"):
            await engine.embed(["x"])
    finally:
        await engine.close()


async def test_rerank_without_truncation_refuses_a_long_document(tiny_reranker):
    engine = MlxEmbedEngine(
        "rank", tiny_reranker, kind="rerank", context_length=None, max_batch=2, truncate=False
    )
    await engine.start()
    try:
        with pytest.raises(ContextLengthExceeded, match=r"documents\[1\]") as caught:
            await engine.rerank(QUERY, ["short", "a long document " * 100])
        assert caught.value.param == "documents"
        with pytest.raises(ContextLengthExceeded) as caught:
            await engine.rerank("word " * 200, ["short"])
        assert caught.value.param == "query"
    finally:
        await engine.close()


async def test_kind_must_match_the_folder(tiny_reranker, minilm_dir):
    for path, kind in ((tiny_reranker, "embedding"), (minilm_dir, "rerank")):
        engine = MlxEmbedEngine("x", path, kind=kind, context_length=None, max_batch=2, truncate=True)
        with pytest.raises(UnsupportedModelError):
            await engine.start()


def test_batches_cover_every_input_once_with_little_padding():
    import random

    from radis_mlx.engines.mlx.embed import batches

    rng = random.Random(0)
    lengths = [rng.choice([3, 8, 20, 60, 256]) + rng.randrange(5) for _ in range(200)]
    found = batches(lengths, 8)
    assert sorted(i for batch in found for i in batch) == list(range(200))
    for batch in found:
        assert len(batch) <= 8
        assert len(batch) * max(lengths[i] for i in batch) <= 2 * sum(lengths[i] for i in batch)
    assert len(found) < 200 / 4  # and still batched
