"""An independent NumPy forward pass of a Hugging Face BERT folder: what both engines are tested against.

Written from the architecture (transformers' BertModel in eval mode), not from our modules: it reads
model.safetensors and tokenizer.json itself and runs in float64 with the exact (erf) GELU.

    x = LN(word[ids] + position[0..T) + token_type[type_ids])
    per layer:  x = LN(x + W_o softmax(Q K^T / sqrt(d)) V + b_o);  x = LN(x + W_2 gelu(W_1 x + b_1) + b_2)

Embedders pool as their sentence-transformers config says (mean / cls, then Normalize); cross-encoders
score classifier(tanh(pooler(h[CLS]))) over `[CLS] query [SEP] document [SEP]`, with the document's
segment ids 1 (transformers) or 0 (`segments="zeros"`: what a GGUF reranker computes in llama.cpp).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-15, vectorized (math.erf per element is far too slow): Maclaurin series below 2.5,
    the continued fraction of erfc above."""
    out = np.empty_like(x)
    small = np.abs(x) < 2.5
    xs = x[small]
    term, total, square = xs.copy(), xs.copy(), xs * xs
    for n in range(1, 60):  # 60 terms reach float64's resolution below 2.5
        term = term * (-square) / n
        total = total + term / (2 * n + 1)
    out[small] = total * (2.0 / math.sqrt(math.pi))
    a = np.abs(x[~small])
    fraction = np.zeros_like(a)
    for k in range(60, 0, -1):
        fraction = (k / 2.0) / (a + fraction)
    out[~small] = np.sign(x[~small]) * (1.0 - np.exp(-a * a) / math.sqrt(math.pi) / (a + fraction))
    return out


class NumpyBert:
    """A BERT checkpoint folder evaluated with NumPy (float64 by default; float32 for benchmarks)."""

    def __init__(self, folder: Path, dtype: type = np.float64) -> None:
        self.folder = Path(folder)
        self.dtype = dtype
        self.config = json.loads((self.folder / "config.json").read_text())
        self.eps = float(self.config.get("layer_norm_eps", 1e-12))
        self.w = {}
        for name, tensor in load_file(str(self.folder / "model.safetensors")).items():
            name = name.removeprefix("bert.").replace(".gamma", ".weight").replace(".beta", ".bias")
            self.w[name] = tensor.astype(dtype) if tensor.dtype.kind == "f" else tensor
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # all-MiniLM's tokenizer.json pads every text to 128 tokens
        self.tokenizer.no_truncation()
        self.max_length = self._max_length()
        self.pooling, self.normalize = self._sentence_transformers()
        self._embedded: dict[str, np.ndarray] = {}  # texts already embedded (tests ask again)

    def _max_length(self) -> int:
        positions = self.config["max_position_embeddings"]
        for name, key in (
            ("sentence_bert_config.json", "max_seq_length"),
            ("tokenizer_config.json", "model_max_length"),
        ):
            file = self.folder / name
            if file.is_file() and isinstance(value := json.loads(file.read_text()).get(key), int):
                return min(value, positions)
        return positions

    def _sentence_transformers(self) -> tuple[str, bool]:
        modules = self.folder / "modules.json"
        if not modules.is_file():
            return "mean", False
        pooling, normalize = "mean", False
        for module in json.loads(modules.read_text()):
            kind = module["type"].rsplit(".", 1)[-1]
            if kind == "Pooling":
                config = json.loads((self.folder / module["path"] / "config.json").read_text())
                pooling = "cls" if config.get("pooling_mode_cls_token") else "mean"
            normalize = normalize or kind == "Normalize"
        return pooling, normalize

    # Tokens, fitted as sentence-transformers does: the head of the text and its closing [SEP].

    def tokens(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text).ids
        return ids if len(ids) <= self.max_length else ids[: self.max_length - 1] + ids[-1:]

    def pair(self, query: str, document: str) -> tuple[list[int], list[int]]:
        """[CLS] query [SEP] document [SEP] and its segment ids, the document cut to fit."""
        self.tokenizer.enable_truncation(self.max_length, strategy="only_second")
        try:
            encoding = self.tokenizer.encode(query, document)
        finally:
            self.tokenizer.no_truncation()
        return encoding.ids, encoding.type_ids

    # The model.

    def hidden(self, ids: list[int], type_ids: list[int] | None = None) -> np.ndarray:
        """The last hidden states [T, H] of one unpadded sequence."""
        w, length = self.w, len(ids)
        types = np.zeros(length, dtype=np.int64) if type_ids is None else np.asarray(type_ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        heads = self.config["num_attention_heads"]
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (self._dense(x, p + f"attention.self.{n}") for n in ("query", "key", "value"))
            split = [t.reshape(length, heads, -1).transpose(1, 0, 2) for t in (q, k, v)]
            scores = split[0] @ split[1].transpose(0, 2, 1) / math.sqrt(split[0].shape[-1])
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ split[2]).transpose(1, 0, 2).reshape(length, -1)
            x = self._norm(
                self._dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm"
            )
            inner = self._dense(x, p + "intermediate.dense")
            inner = 0.5 * inner * (1 + self._erf(inner / math.sqrt(2)))
            x = self._norm(self._dense(inner, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embed(self, text: str) -> np.ndarray:
        """The sentence-transformers embedding of a text."""
        if text not in self._embedded:
            hidden = self.hidden(self.tokens(text))
            pooled = hidden[0] if self.pooling == "cls" else hidden.mean(axis=0)
            self._embedded[text] = pooled / np.linalg.norm(pooled) if self.normalize else pooled
        return self._embedded[text]

    def score(self, query: str, document: str, segments: str = "hf") -> float:
        """The cross-encoder's logit for a pair; segments "zeros": every token type 0 (llama.cpp's GGUFs)."""
        ids, types = self.pair(query, document)
        first = self.hidden(ids, types if segments == "hf" else None)[0]
        pooled = np.tanh(self._dense(first, "pooler.dense"))
        return float(self._dense(pooled, "classifier")[0])

    def _erf(self, x: np.ndarray) -> np.ndarray:
        return _erf(x) if self.dtype == np.float64 else _erf_fast(x)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        centered = x - x.mean(-1, keepdims=True)
        scaled = centered / np.sqrt((centered**2).mean(-1, keepdims=True) + self.eps)
        return scaled * self.w[name + ".weight"] + self.w[name + ".bias"]


def _erf_fast(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, float32's resolution), for the float32 benchmark."""
    sign, a = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
