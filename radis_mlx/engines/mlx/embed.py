"""Encoder models on MLX: sentence embedders and cross-encoders (BERT family).

A sentence-transformers folder's module config is honored (pooling from 1_Pooling/config.json,
Normalize from modules.json); a BERT embedding GGUF is converted once into such a folder
(gguf_bert.py). Inputs are tokenized and fitted by the policy both engines share
(encoders/tokens.py). Embedding requests that arrive while the model is busy wait and then run
together: their inputs are sorted by length and cut into padded batches of at most max_batch,
where padding is at most half of a batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radis_mlx.engines.base import EngineInfo
from radis_mlx.engines.encoders.folder import EncoderFolder, read_folder
from radis_mlx.engines.encoders.tokens import EncoderTokenizer, Pair
from radis_mlx.engines.mlx.thread import ModelThread, ThreadedEngine
from radis_mlx.errors import InvalidRequestError, ModelLoadError
from radis_mlx.generation.types import EmbeddingResult, RerankResult, Tokenized, check_token_ids
from radis_mlx.store.gguf import is_gguf

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    """One embedding request waiting for the model thread."""

    inputs: list[str] | list[list[int]]
    future: asyncio.Future[EmbeddingResult]
    loop: asyncio.AbstractEventLoop

    def settle(self, result: EmbeddingResult | None, error: BaseException | None) -> None:
        def apply() -> None:
            if self.future.done():
                return  # the request went away
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)  # type: ignore[arg-type]

        self.loop.call_soon_threadsafe(apply)


class MlxEmbedEngine(ThreadedEngine):
    """A BERT encoder (and head) and its tokenizer, owned by one model thread."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        kind: str = "embedding",
        context_length: int | None,
        max_batch: int,
        truncate: bool,
        cache_dir: Path | None = None,
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.kind = kind
        self.max_batch = max_batch
        self.truncate = truncate
        self.cache_dir = cache_dir
        self.info = EngineInfo(name="mlx", context_length=context_length or 0)
        self._thread = ModelThread(name=f"mlx-embed:{model_id}")
        self._model: Any = None
        self._tokens: EncoderTokenizer | None = None
        self._folder: EncoderFolder | None = None
        self._waiting: list[_Waiting] = []
        self._lock = threading.Lock()

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        if self.kind != "embedding":
            raise InvalidRequestError(
                "this model is a reranker: use /v1/rerank", param="model", code="model_not_embedding"
            )
        loop = asyncio.get_running_loop()
        waiting = _Waiting(inputs, loop.create_future(), loop)
        with self._lock:
            self._waiting.append(waiting)
            first = len(self._waiting) == 1
        if first:  # one job takes every request waiting when it runs
            self._thread.post(self._embed_waiting)
        return await waiting.future

    async def rerank(self, query: str, documents: list[str]) -> RerankResult:
        if self.kind != "rerank":
            return await super().rerank(query, documents)
        return await self._thread.call(self._rerank, query, documents)

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        # The tokenizer is thread-safe: a worker thread, not the model's (busy with batches) or the loop.
        tokens = self._require_tokens()
        return await asyncio.to_thread(tokens.tokenized, text, add_special, with_pieces)

    async def detokenize(self, tokens: list[int]) -> str:
        check_token_ids(tokens, self._require_tokens().vocab_size, "tokens")
        return await asyncio.to_thread(self._require_tokens().decode, tokens)

    def _require_tokens(self) -> EncoderTokenizer:
        if self._tokens is None:
            raise ModelLoadError(f"{self.model_id} is not loaded")
        return self._tokens

    # Everything below runs on the model thread.

    def _load(self) -> None:
        import mlx.core as mx
        import mlx.utils

        from radis_mlx.engines.mlx.bert import BertConfig, BertForSequenceClassification, BertModel

        folder = self.path
        if is_gguf(folder):
            from radis_mlx.engines.mlx.gguf_bert import convert_bert_gguf

            if self.kind != "embedding" or self.cache_dir is None:
                raise InvalidRequestError("MLX runs embedding GGUFs only", param="model")
            folder = convert_bert_gguf(folder, self.cache_dir)
        spec = self._folder = read_folder(folder, self.kind)
        config = BertConfig.from_dict(spec.config)
        try:
            weights = mx.load(str(next(folder.glob("model*.safetensors"))))
            assert isinstance(weights, dict)
            if self.kind == "rerank":
                labels = int(weights["classifier.weight"].shape[0])
                model: Any = BertForSequenceClassification(config, labels)
                weights = BertForSequenceClassification.sanitize(weights)
            else:
                model = BertModel(config)
                weights = BertModel.sanitize(weights)
            # float32 throughout: these encoders are small, and the vectors should be exact.
            model.load_weights([(k, v.astype(mx.float32)) for k, v in weights.items()], strict=True)
            limit = min(self.info.context_length or spec.max_length, spec.max_length)
            self._tokens = EncoderTokenizer.from_file(
                folder / "tokenizer.json",
                vocab_size=config.vocab_size,
                max_length=limit,
                truncate=self.truncate,
            )
        except Exception as exc:
            raise ModelLoadError(f"could not load {self.path.name}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        mx.eval(model.parameters())
        self._model = model
        self.info.context_length = limit
        parameters: list[tuple[str, Any]] = mlx.utils.tree_flatten(model.parameters())  # type: ignore[assignment]
        self.info.size_bytes = sum(v.nbytes for _, v in parameters)
        self.info.details = {"format": "gguf" if is_gguf(self.path) else "safetensors", "task": self.kind}
        if self.kind == "embedding":
            self.info.details["pooling"] = "+".join(spec.pooling)
            self.info.details["dimensions"] = str(config.hidden_size * len(spec.pooling))

    def _embed_waiting(self) -> None:
        """Embed every waiting request's inputs together, sorted by length across requests."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        tokens = self._require_tokens()
        requests: list[tuple[_Waiting, list[list[int]]]] = []
        for item in waiting:
            try:
                requests.append((item, tokens.sequences(item.inputs)))
            except Exception as exc:
                item.settle(None, exc)
        sequences = [s for _, request in requests for s in request]
        try:
            vectors = self._vectors(sequences)
        except Exception as exc:
            for item, _ in requests:
                item.settle(None, exc)
            return
        at = 0
        for item, request in requests:
            item.settle(EmbeddingResult(vectors[at : at + len(request)], sum(len(s) for s in request)), None)
            at += len(request)

    def _vectors(self, sequences: list[list[int]]) -> list[list[float]]:
        vectors: list[list[float]] = [[] for _ in sequences]
        for batch in batches([len(s) for s in sequences], self.max_batch):
            for index, row in zip(batch, self._pooled([sequences[i] for i in batch]), strict=True):
                vectors[index] = row.tolist()
        return vectors

    def _rerank(self, query: str, documents: list[str]) -> RerankResult:
        pairs = self._require_tokens().pairs(query, documents)
        scores = [0.0] * len(pairs)
        for batch in batches([len(p.ids) for p in pairs], self.max_batch):
            for index, score in zip(batch, self._scores([pairs[i] for i in batch]), strict=True):
                scores[index] = float(score)
        return RerankResult(scores, sum(len(p.ids) for p in pairs))

    def _padded(self, batch: list[list[int]], types: list[list[int]] | None = None) -> tuple[Any, ...]:
        import mlx.core as mx

        width = max(len(s) for s in batch)
        ids = np.full((len(batch), width), self._model.config.pad_token_id, dtype=np.int32)
        segments = np.zeros((len(batch), width), dtype=np.int32)
        mask = np.zeros((len(batch), width), dtype=np.float32)
        for row, sequence in enumerate(batch):
            ids[row, : len(sequence)] = sequence
            segments[row, : len(sequence)] = types[row] if types else 0
            mask[row, : len(sequence)] = 1.0
        return mx.array(ids), mx.array(mask), mx.array(segments)

    def _pooled(self, batch: list[list[int]]) -> np.ndarray:
        import mlx.core as mx

        assert self._folder is not None
        ids, attention, _ = self._padded(batch)
        pooled = _pool(self._model(ids, attention), attention, self._folder.pooling)
        if self._folder.normalize:
            pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        mx.eval(pooled)
        return np.array(pooled, dtype=np.float32)

    def _scores(self, batch: list[Pair]) -> np.ndarray:
        import mlx.core as mx

        ids, attention, segments = self._padded([p.ids for p in batch], [p.type_ids for p in batch])
        logits = self._model(ids, attention, segments)[:, 0]  # the first logit, as llama.cpp's rank head
        mx.eval(logits)
        return np.array(logits, dtype=np.float64)


def batches(lengths: list[int], max_batch: int) -> list[list[int]]:
    """Input indices in forward passes: by length, at most max_batch each, at most half of each padding."""
    found: list[list[int]] = []
    tokens = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        batch = found[-1] if found else []
        longest = lengths[index]  # sorted: the newcomer sets the padded width
        if not batch or len(batch) == max_batch or (len(batch) + 1) * longest > 2 * (tokens + longest):
            found.append([index])
            tokens = longest
        else:
            batch.append(index)
            tokens += longest
    return found


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
