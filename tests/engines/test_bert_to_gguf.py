"""The BERT folder → GGUF converter: what it writes, its cache, what it refuses; the vocabulary read back."""

from __future__ import annotations

import json
import os
import shutil

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from radis_mlx.engines.encoders.gguf_vocab import SEGMENT_OFFSET_KEY, wordpiece_tokenizer
from radis_mlx.engines.llamacpp.bert_to_gguf import convert_folder
from radis_mlx.errors import UnsupportedModelError
from radis_mlx.store.gguf import gguf_metadata

TEXTS = [
    "Hello world",
    "naïve café owners in Zürich don't serve crème brûlée after 10pm!",
    "東京は日本の首都です。 Tokyo is the capital of Japan.",
    "I love pizza 🍕 and sushi 🍣!!!",
    "E = mc^2; ∑_{i=1}^{n} x_i ≥ 0 ⇒ proof.",
    "한국어 텍스트 and ภาษาไทย",
    "x" * 130,
    "literal [SEP] and [CLS] in text",
]


def tensors(path) -> dict[str, np.ndarray]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}


def test_embedder_metadata_tensors_and_vocabulary(minilm_gguf, minilm_dir):
    meta = gguf_metadata(minilm_gguf, arrays=("tokenizer.ggml.tokens",))
    assert meta["general.architecture"] == "bert" and meta["bert.block_count"] == 6
    assert meta["bert.context_length"] == 512 and meta["bert.embedding_length"] == 384
    assert meta["bert.pooling_type"] == 1  # mean, from 1_Pooling/config.json
    assert meta["bert.attention.causal"] is False
    assert meta["tokenizer.ggml.model"] == "bert" and SEGMENT_OFFSET_KEY not in meta
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (101, 102)
    tokens = meta["tokenizer.ggml.tokens"]
    assert len(tokens) == 30522 and tokens[101] == "[CLS]"  # control tokens verbatim
    assert tokens[7592] == "\u2581hello" and tokens[2075] == "ing"  # `hello`, `##ing`
    written = tensors(minilm_gguf)
    source = load_file(str(minilm_dir / "model.safetensors"))
    assert np.array_equal(written["token_embd.weight"], source["embeddings.word_embeddings.weight"])
    assert np.array_equal(written["blk.5.ffn_down.weight"], source["encoder.layer.5.output.dense.weight"])
    assert not any(name.startswith("cls") for name in written)  # an embedder keeps no pooler


def test_the_rebuilt_tokenizer_matches_tokenizer_json(minilm_gguf, minilm_dir):
    original = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    original.no_padding()
    original.no_truncation()
    rebuilt = wordpiece_tokenizer(minilm_gguf)
    for text in TEXTS:
        assert rebuilt.encode(text).ids == original.encode(text).ids, text
    pair, expected = rebuilt.encode(TEXTS[0], TEXTS[1]), original.encode(TEXTS[0], TEXTS[1])
    assert (pair.ids, pair.type_ids) == (expected.ids, expected.type_ids)
    assert rebuilt.decode(expected.ids[1:-1]) == original.decode(expected.ids[1:-1])


def test_cross_encoder_keeps_its_head_and_a_second_segment_vocabulary(tiny_reranker, tmp_path):
    path = convert_folder(tiny_reranker, "rerank", tmp_path)
    meta = gguf_metadata(path, arrays=("tokenizer.ggml.tokens", "bert.classifier.output_labels"))
    assert meta["bert.pooling_type"] == 4 and meta[SEGMENT_OFFSET_KEY] == 30522
    assert len(meta["tokenizer.ggml.tokens"]) == 2 * 30522
    assert meta["bert.classifier.output_labels"] == ["LABEL_0"]
    written, source = tensors(path), load_file(str(tiny_reranker / "model.safetensors"))
    word = source["bert.embeddings.word_embeddings.weight"]
    segments = source["bert.embeddings.token_type_embeddings.weight"]
    assert np.array_equal(written["token_embd.weight"][:30522], word)
    assert np.allclose(written["token_embd.weight"][30522:], word + (segments[1] - segments[0]), atol=1e-6)
    assert np.array_equal(written["cls.weight"], source["bert.pooler.dense.weight"])  # the pooler, kept
    assert np.array_equal(written["cls.output.weight"], source["classifier.weight"])
    # The copies never match text: the rebuilt tokenizer has the first vocabulary only.
    assert wordpiece_tokenizer(path).get_vocab_size() == 30522


def test_converted_once_and_again_when_the_folder_changes(tmp_path, minilm_dir):
    folder = tmp_path / "minilm"
    shutil.copytree(minilm_dir, folder)
    first = convert_folder(folder, "embedding", tmp_path / "cache")
    written = first.stat().st_mtime_ns
    assert convert_folder(folder, "embedding", tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == written
    os.utime(folder / "config.json", ns=(1, 1))
    second = convert_folder(folder, "embedding", tmp_path / "cache")
    assert second != first and second.is_file()
    assert not list((tmp_path / "cache" / "bert-gguf").glob(".*.tmp"))


def _edited(tmp_path, source, edit):
    folder = tmp_path / "edited"
    shutil.copytree(source, folder)
    edit(folder)
    return folder


def _json(folder, name, **changes):
    path = folder / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("edit", "kind", "message"),
    [
        (lambda f: _json(f, "config.json", model_type="roberta"), "embedding", "not a BERT"),
        (lambda f: _json(f, "config.json", hidden_act="relu"), "embedding", "GELU"),
        (lambda f: _json(f, "config.json", position_embedding_type="relative_key"), "embedding", "absolute"),
        (
            lambda f: _json(
                f, "1_Pooling/config.json", pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True
            ),
            "embedding",
            "no llama.cpp equivalent",
        ),
        (
            lambda f: (f / "modules.json").write_text(
                json.dumps(
                    [
                        *json.loads((f / "modules.json").read_text()),
                        {"path": "3_Dense", "type": "sentence_transformers.models.Dense"},
                    ]
                )
            ),
            "embedding",
            "Dense",
        ),
        (lambda f: None, "rerank", "no classifier"),
    ],
)
def test_refuses_what_llama_cpp_would_compute_wrongly(tmp_path, minilm_dir, edit, kind, message):
    folder = _edited(tmp_path, minilm_dir, edit)
    with pytest.raises(UnsupportedModelError, match=message):
        convert_folder(folder, kind, tmp_path / "cache")
    assert not (tmp_path / "cache" / "bert-gguf").exists() or not any(
        (tmp_path / "cache" / "bert-gguf").iterdir()
    )


def test_a_cased_vocabulary_is_refused(tmp_path, minilm_dir):
    def cased(folder):
        tokenizer = json.loads((folder / "tokenizer.json").read_text())
        tokenizer["normalizer"]["lowercase"] = False
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer))

    with pytest.raises(UnsupportedModelError, match="lowercases"):
        convert_folder(_edited(tmp_path, minilm_dir, cased), "embedding", tmp_path / "cache")
