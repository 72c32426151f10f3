"""What an encoder model is to the llama.cpp engine: its GGUF, tokenizer, pooling, length and head.

A BERT folder is converted to GGUF once (bert_to_gguf.py) and keeps its own tokenizer.json and
sentence-transformers settings; a GGUF is served as it is, with a tokenizer rebuilt from its
WordPiece vocabulary (encoders/gguf_vocab.py) or, for other vocabularies, the child's own.
A cross-encoder's head (llama.cpp's `cls`, `cls.output`) is read here and applied by the engine
to the first token's hidden state, which the child returns with CLS pooling: the engine then
chooses every token id itself (the second segment's copy of the vocabulary, a cut document).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radis_mlx.engines.encoders.folder import read_folder
from radis_mlx.engines.encoders.gguf_vocab import SEGMENT_OFFSET_KEY, is_wordpiece, wordpiece_tokenizer
from radis_mlx.engines.encoders.tokens import EncoderTokenizer
from radis_mlx.engines.llamacpp.bert_to_gguf import convert_folder
from radis_mlx.errors import UnsupportedModelError
from radis_mlx.store.gguf import gguf_metadata, is_gguf

_RANK = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK
# A GGUF embedder's default input length when the entry sets no context_length (Qwen3-Embedding was
# trained on 32k: a micro-batch and KV cache that large would cost gigabytes for every load).
DEFAULT_GGUF_LENGTH = 8192


@dataclass
class EncoderModel:
    """An encoder GGUF and how the engine drives it."""

    gguf: Path
    task: str  # "embedding" or "rerank"
    pooling: str  # the child's --pooling: "unspecified" (the file's), "mean", "cls"
    normalize: bool  # L2-normalize the pooled vectors (llama.cpp's embd_normalize 2)
    max_length: int
    tokenizer: EncoderTokenizer | None  # None: tokenized by the child (non-WordPiece GGUFs)
    segment_offset: int = 0  # ids from here on are the second segment's (our converted cross-encoders)
    causal: bool = False  # a decoder used as an embedder: it keeps a KV cache while it reads an input
    head: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (weight, bias): dense, tanh, …

    def scores(self, first_tokens: np.ndarray) -> np.ndarray:
        """The head over the first token's hidden states: tanh after every layer but the last; logit 0."""
        x = first_tokens.astype(np.float64)
        for at, (weight, bias) in enumerate(self.head):
            x = x @ weight.T + bias
            if at < len(self.head) - 1:
                x = np.tanh(x)
        return np.asarray(x[:, 0])


def encoder_model(
    path: Path, kind: str, *, context_length: int | None, truncate: bool, cache_dir: Path
) -> EncoderModel:
    """Read (and convert, once) an encoder source for the llama.cpp engine; blocking."""
    if not is_gguf(path):
        spec = read_folder(path, kind)
        length = min(context_length or spec.max_length, spec.max_length)
        tokenizer = EncoderTokenizer.from_file(
            path / "tokenizer.json",
            vocab_size=int(spec.config["vocab_size"]),
            max_length=length,
            truncate=truncate,
        )
        model = EncoderModel(
            convert_folder(path, kind, cache_dir),
            spec.task,
            "cls" if spec.task == "rerank" else "unspecified",
            spec.normalize,
            length,
            tokenizer,
        )
    else:
        model = _gguf_model(path, kind, context_length, truncate)
    if model.task == "rerank":
        meta = gguf_metadata(model.gguf)
        model.segment_offset = int(meta.get(SEGMENT_OFFSET_KEY) or 0)
        model.head = _head(model.gguf)
    return model


def _gguf_model(path: Path, kind: str, context_length: int | None, truncate: bool) -> EncoderModel:
    meta = gguf_metadata(path)
    arch = meta.get("general.architecture", "")
    trained = int(meta.get(f"{arch}.context_length") or 512)
    length = min(context_length or DEFAULT_GGUF_LENGTH, trained)
    pooling = meta.get(f"{arch}.pooling_type")
    rank = pooling == _RANK
    if rank and kind != "rerank":
        raise UnsupportedModelError(f'{path.name} is a reranker: set kind = "rerank"', param="model")
    if kind == "rerank" and not rank:
        raise UnsupportedModelError(f"{path.name} is no reranker (its pooling is not rank)", param="model")
    tokenizer = None
    if is_wordpiece(meta):
        size = int(meta.get(SEGMENT_OFFSET_KEY) or 0)
        tokenizer = EncoderTokenizer(
            wordpiece_tokenizer(path),
            vocab_size=size
            or len(gguf_metadata(path, arrays=("tokenizer.ggml.tokens",))["tokenizer.ggml.tokens"]),
            max_length=length,
            truncate=truncate,
        )
    elif rank:
        raise UnsupportedModelError(
            f"{path.name}: only WordPiece (BERT) rerankers are served, "
            f"not a {meta.get('tokenizer.ggml.model')} vocabulary",
            param="model",
        )
    # A GGUF without a pooling type (an LLM used as an embedder) is mean-pooled, as LLM entries are.
    child_pooling = "cls" if rank else ("unspecified" if pooling is not None else "mean")
    model = EncoderModel(path, kind, child_pooling, True, length, tokenizer)
    model.causal = bool(meta.get(f"{arch}.attention.causal", True))
    return model


def _head(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """llama.cpp's rank head: `cls` (dense, then tanh) if present, then `cls.output`."""
    import gguf

    tensors: dict[str, Any] = {
        t.name: t for t in gguf.GGUFReader(str(path)).tensors if t.name.startswith("cls.")
    }

    def array(name: str) -> np.ndarray:
        tensor = tensors[name]
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        return np.asarray(data, dtype=np.float64).reshape([int(n) for n in reversed(tensor.shape)])

    if "cls.output.weight" not in tensors:
        raise UnsupportedModelError(f"{path.name} has no classifier (cls.output)", param="model")
    layers = ["cls", "cls.output"] if "cls.weight" in tensors else ["cls.output"]
    head = []
    for name in layers:
        weight = array(f"{name}.weight")
        bias = array(f"{name}.bias") if f"{name}.bias" in tensors else np.zeros(weight.shape[0])
        head.append((weight, bias))
    return head
