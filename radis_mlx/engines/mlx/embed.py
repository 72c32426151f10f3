"""Sentence embeddings on MLX: BERT-family encoders from sentence-transformers folders.

The folder's module config is honored: the pooling mode from 1_Pooling/config.json and the
Normalize module from modules.json. Inputs are sorted by length and run in padded batches of
at most max_batch, one forward pass each.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from radis_mlx.engines.base import EngineInfo
from radis_mlx.engines.mlx.thread import ModelThread, ThreadedEngine
from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError, ModelLoadError, UnsupportedModelError
from radis_mlx.generation.types import EmbeddingResult

log = logging.getLogger(__name__)

# sentence-transformers concatenates the enabled pooling modes in this order.
_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")
_KNOWN_MODULES = {"Transformer", "Pooling", "Normalize"}


class MlxEmbedEngine(ThreadedEngine):
    """A BERT encoder and its tokenizer, owned by one model thread."""

    def __init__(
        self, model_id: str, path: Path, *, context_length: int | None, max_batch: int, truncate: bool
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.max_batch = max_batch
        self.truncate = truncate
        self.info = EngineInfo(name="mlx", context_length=context_length or 0)
        self._thread = ModelThread(name=f"mlx-embed:{model_id}")
        self._model: Any = None
        self._tokenizer: Any = None
        self._pooling: list[str] = []
        self._normalize = False
        self._prefix: list[int] = []
        self._suffix: list[int] = []

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        return await self._thread.call(self._embed, inputs)

    # Everything below runs on the model thread.

    def _load(self) -> None:
        import mlx.core as mx
        import mlx.utils
        from tokenizers import Tokenizer

        from radis_mlx.engines.mlx.bert import BertConfig, BertModel

        folder = self.path
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise UnsupportedModelError(
                f"{folder.name} is not an embedding model folder (config.json + model.safetensors)",
                param="model",
            )
        config = BertConfig.from_dict(json.loads((folder / "config.json").read_text()))
        self._pooling, self._normalize = _sentence_transformer_modules(folder)
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            # tokenizer.json may carry fixed padding/truncation; we pad and truncate ourselves.
            tokenizer.no_padding()
            tokenizer.no_truncation()
            model = BertModel(config)
            weights = BertModel.sanitize(mx.load(str(folder / "model.safetensors")))  # type: ignore[arg-type]
            # float32 throughout: these encoders are small, and the vectors should be exact.
            model.load_weights([(k, v.astype(mx.float32)) for k, v in weights.items()], strict=True)
        except Exception as exc:
            raise ModelLoadError(f"could not load {folder.name}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        mx.eval(model.parameters())
        self._model, self._tokenizer = model, tokenizer
        self._prefix, self._suffix = _special_tokens(tokenizer)

        limit = _max_length(folder, config.max_position_embeddings)
        self.info.context_length = min(self.info.context_length or limit, limit)
        parameters: list[tuple[str, Any]] = mlx.utils.tree_flatten(model.parameters())  # type: ignore[assignment]
        self.info.size_bytes = sum(v.nbytes for _, v in parameters)
        width = config.hidden_size * len(self._pooling)
        self.info.details = {
            "format": "safetensors",
            "pooling": "+".join(self._pooling),
            "dimensions": str(width),
        }

    def _embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        sequences = self._sequences(inputs)
        vectors: list[list[float]] = [[] for _ in sequences]
        # Similar lengths share a batch, so little of each forward pass is padding.
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for start in range(0, len(order), self.max_batch):
            batch = order[start : start + self.max_batch]
            for index, row in zip(batch, self._forward([sequences[i] for i in batch]), strict=True):
                vectors[index] = row.tolist()
        return EmbeddingResult(vectors, sum(len(s) for s in sequences))

    def _sequences(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        """Token ids per input, special tokens included, fitted to the model's maximum length."""
        items: list[str | list[int]] = list(inputs)
        texts = [x for x in items if isinstance(x, str)]
        encoded = iter(e.ids for e in self._tokenizer.encode_batch(texts)) if texts else iter(())
        vocab = self._model.config.vocab_size
        sequences = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                ids = list(next(encoded))
            else:
                bad = next((t for t in item if not 0 <= t < vocab), None)
                if bad is not None:
                    raise InvalidRequestError(
                        f"token id {bad} in input[{index}] is outside the vocabulary (0..{vocab - 1})",
                        param="input",
                    )
                ids = self._with_special_tokens(item)
            sequences.append(self._fit(ids, index))
        return sequences

    def _with_special_tokens(self, ids: list[int]) -> list[int]:
        """Token ids are the text's tokens; add the model's [CLS]/[SEP] unless already there."""
        prefix, suffix = self._prefix, self._suffix
        has_prefix = ids[: len(prefix)] == prefix
        has_suffix = not suffix or ids[-len(suffix) :] == suffix
        if has_prefix and has_suffix and len(ids) >= len(prefix) + len(suffix):
            return list(ids)
        return prefix + list(ids) + suffix

    def _fit(self, ids: list[int], index: int) -> list[int]:
        limit = self.info.context_length
        if len(ids) <= limit:
            return ids
        if not self.truncate:
            raise ContextLengthExceeded(
                f"input[{index}] has {len(ids)} tokens; this model's maximum is {limit} tokens",
                param="input",
            )
        # Keep the closing special tokens, as Hugging Face tokenizers truncate.
        keep = limit - len(self._suffix)
        return ids[:keep] + self._suffix

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        import mlx.core as mx

        width = max(len(s) for s in batch)
        ids = np.full((len(batch), width), self._model.config.pad_token_id, dtype=np.int32)
        mask = np.zeros((len(batch), width), dtype=np.float32)
        for row, sequence in enumerate(batch):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1.0
        attention = mx.array(mask)
        hidden = self._model(mx.array(ids), attention)
        pooled = _pool(hidden, attention, self._pooling)
        if self._normalize:
            pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        mx.eval(pooled)
        return np.array(pooled, dtype=np.float32)


def _pool(hidden: Any, mask: Any, modes: list[str]) -> Any:
    """sentence-transformers' Pooling module over the last hidden state."""
    import mlx.core as mx

    weights = mask[:, :, None]
    counts = mx.maximum(weights.sum(axis=1), 1e-9)
    pooled = []
    for mode in modes:
        if mode == "cls_token":
            pooled.append(hidden[:, 0])
        elif mode == "max_tokens":
            pooled.append(mx.where(weights > 0, hidden, -1e9).max(axis=1))
        elif mode == "mean_tokens":
            pooled.append((hidden * weights).sum(axis=1) / counts)
        else:
            pooled.append((hidden * weights).sum(axis=1) / mx.sqrt(counts))
    return pooled[0] if len(pooled) == 1 else mx.concatenate(pooled, axis=-1)


def _sentence_transformer_modules(folder: Path) -> tuple[list[str], bool]:
    """Pooling modes and whether to normalize; a plain BERT folder means mean pooling, no Normalize."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return ["mean_tokens"], False
    modules = json.loads(modules_file.read_text())
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    unknown = set(kinds) - _KNOWN_MODULES
    if unknown:
        raise UnsupportedModelError(
            f"sentence-transformers modules {sorted(unknown)} are not supported", param="model"
        )
    modes = ["mean_tokens"]
    if "Pooling" in kinds:
        pooling = json.loads((folder / kinds["Pooling"]["path"] / "config.json").read_text())
        unsupported = [
            k
            for k, v in pooling.items()
            if k.startswith("pooling_mode_") and v and k[13:] not in _POOLING_MODES
        ]
        if unsupported:
            raise UnsupportedModelError(f"pooling {unsupported} is not supported", param="model")
        modes = [m for m in _POOLING_MODES if pooling.get(f"pooling_mode_{m}")]
        if not modes:
            raise UnsupportedModelError("the Pooling module enables no pooling mode", param="model")
    return modes, "Normalize" in kinds


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own tokens (BERT: [CLS], [SEP])."""
    full = tokenizer.encode("a").ids
    core = tokenizer.encode("a", add_special_tokens=False).ids
    for at in range(len(full) - len(core) + 1):
        if full[at : at + len(core)] == core:
            return full[:at], full[at + len(core) :]
    return [], []


def _max_length(folder: Path, positions: int) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's, never past the position table."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        file = folder / name
        if file.is_file():
            value = json.loads(file.read_text()).get(key)
            if isinstance(value, int) and value > 0:
                return min(value, positions)
    return positions
