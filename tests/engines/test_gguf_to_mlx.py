"""GGUF -> mlx-lm conversion, against a real SmolLM2-135M-Instruct Q4_1 GGUF (no mocks)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import gguf
import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
from mlx_lm.sample_utils import make_sampler

from radis_mlx.engines.mlx.gguf_to_mlx import convert_gguf
from radis_mlx.errors import ModelLoadError, UnsupportedModelError

# Token ids llama.cpp itself gives for these strings with this GGUF (xllamacpp 2026.10.11549,
# /tokenize with parse_special). The last-but-one needs llama.cpp's digit split: " ½" is two tokens.
LLAMA_CPP_IDS = {
    "Hello world": [19556, 905],
    "What is the capital of France?": [1780, 314, 260, 3575, 282, 4649, 47],
    " multiple   spaces\n\nnewlines": [2701, 256, 5600, 198, 198, 2241, 5110],
    "café 日本": [83, 1939, 2756, 17097, 241, 115, 40993],
    "1.000.000,00 € 3/4 ½": [
        33,
        30,
        32,
        32,
        32,
        30,
        32,
        32,
        32,
        28,
        32,
        32,
        24927,
        216,
        35,
        31,
        36,
        216,
        16738,
    ],
    "<|im_start|>user\nhi<|im_end|>": [1, 4093, 198, 6004, 2],
}


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("radis-cache")


@pytest.fixture(scope="module")
def converted(smollm_gguf: Path, cache_root: Path) -> Path:
    return convert_gguf(smollm_gguf, cache_root)


@pytest.fixture(scope="module")
def loaded(converted: Path):
    return mlx_lm.load(str(converted))


def test_converted_model_answers(converted: Path, cache_root: Path, loaded) -> None:
    assert converted.parent == cache_root / "gguf-mlx"
    assert converted.name.startswith("SmolLM2-135M-Instruct.Q4_1-")
    model, tokenizer = loaded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=12, sampler=make_sampler(temp=0.0))
    assert "Paris" in text


def test_tokenizer_matches_llama_cpp(loaded) -> None:
    _, tokenizer = loaded
    for text, ids in LLAMA_CPP_IDS.items():
        assert tokenizer.encode(text, add_special_tokens=False) == ids, text
        assert tokenizer.decode(ids) == text
    for text in ["emoji 🤖👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\ttabs\r\n  x", "def f(x):\n    return x**2"]:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.eos_token_ids == {0, 2}  # <|endoftext|> and <|im_end|>, as llama.cpp stops on both


def test_second_call_uses_cache(
    smollm_gguf: Path, cache_root: Path, converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = (converted / "model.safetensors").stat().st_mtime_ns

    def no_reading(*args, **kwargs):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(mx, "load", no_reading)
    monkeypatch.setattr(gguf, "GGUFReader", no_reading)
    started = time.perf_counter()
    again = convert_gguf(smollm_gguf, cache_root)
    assert time.perf_counter() - started < 0.5
    assert again == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    assert (converted / "source.txt").read_text() == str(smollm_gguf.absolute())  # whose it is, for `rm`


def _write_gguf(path: Path, arch: str, tensor: np.ndarray, raw_dtype=None) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", tensor, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "tiny-mamba.gguf", "mamba", np.zeros((4, 8), dtype=np.float32))
    with pytest.raises(UnsupportedModelError, match="architecture 'mamba' is not supported"):
        convert_gguf(path, tmp_path / "cache")
    assert list((tmp_path / "cache" / "gguf-mlx").iterdir()) == []


def test_q4_k_is_refused_not_misread(tmp_path: Path) -> None:
    # MLX decodes Q4_K wrongly without complaint, so the converter must refuse it by name.
    blocks = np.zeros((4, 144), dtype=np.uint8)  # one 256-weight Q4_K block per row
    path = _write_gguf(tmp_path / "tiny-q4k.gguf", "llama", blocks, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    with pytest.raises(UnsupportedModelError, match="Q4_K"):
        convert_gguf(path, tmp_path / "cache")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_unreadable_file(damage: str, smollm_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / f"{damage}.gguf"
    if damage == "truncated":
        with smollm_gguf.open("rb") as source:
            path.write_bytes(source.read(3_000_000))
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "empty":
        path.write_bytes(b"")
    with pytest.raises(ModelLoadError) as caught:
        convert_gguf(path, tmp_path / "cache")
    assert not isinstance(caught.value, UnsupportedModelError)
    assert path.name in caught.value.message
