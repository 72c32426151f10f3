"""The MLX embedding engine against an independent reference: BERT written out in plain numpy.

The reference reads the same safetensors and tokenizer.json, runs in float64 with the exact
(erf) GELU, and pools as the folder's sentence-transformers config says.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from radis_mlx.engines.mlx.embed import MlxEmbedEngine
from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError

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


class NumpyBert:
    """A BERT forward pass in float64 numpy, written from the architecture, not from our module."""

    def __init__(self, folder) -> None:
        self.config = json.loads((folder / "config.json").read_text())
        self.w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
        modules = json.loads((folder / "modules.json").read_text())
        self.normalize = any(m["type"].endswith("Normalize") for m in modules)
        self._erf = np.vectorize(math.erf)

    def tokens(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text).ids
        return ids if len(ids) <= self.max_length else ids[: self.max_length - 1] + ids[-1:]

    def embed(self, text: str) -> np.ndarray:
        ids = self.tokens(text)
        w, eps = self.w, self.config["layer_norm_eps"]
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm", eps)
        heads = self.config["num_attention_heads"]
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (self._dense(x, p + f"attention.self.{n}") for n in ("query", "key", "value"))
            split = [t.reshape(len(ids), heads, -1).transpose(1, 0, 2) for t in (q, k, v)]
            scores = split[0] @ split[1].transpose(0, 2, 1) / math.sqrt(split[0].shape[-1])
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ split[2]).transpose(1, 0, 2).reshape(len(ids), -1)
            x = self._norm(
                self._dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm", eps
            )
            hidden = self._dense(x, p + "intermediate.dense")
            hidden = 0.5 * hidden * (1 + self._erf(hidden / math.sqrt(2)))
            x = self._norm(self._dense(hidden, p + "output.dense") + x, p + "output.LayerNorm", eps)
        pooled = x.mean(axis=0)
        return pooled / np.linalg.norm(pooled) if self.normalize else pooled

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str, eps: float) -> np.ndarray:
        centered = x - x.mean(-1, keepdims=True)
        scaled = centered / np.sqrt((centered**2).mean(-1, keepdims=True) + eps)
        return scaled * self.w[name + ".weight"] + self.w[name + ".bias"]


@pytest.fixture(scope="module")
def reference(minilm_dir) -> NumpyBert:
    return NumpyBert(minilm_dir)


@pytest.fixture
async def engine(minilm_dir):
    engine = MlxEmbedEngine("minilm", minilm_dir, context_length=None, max_batch=8, truncate=True)
    await engine.start()
    yield engine
    await engine.close()


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


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
