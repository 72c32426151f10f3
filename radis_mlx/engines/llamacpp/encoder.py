"""Encoder models on llama.cpp: embedders and cross-encoders in a supervised child, fed token ids.

The engine tokenizes and fits every input itself (encoders/tokens.py: the policy the MLX engine
applies too) and sends token-id lists to the child's /v1/embeddings, because llama.cpp never
truncates and its WordPiece splits some text unlike Hugging Face's (docs/COMPATIBILITY.md). The
counts in `usage` are the ids sent. A cross-encoder runs with CLS pooling and its head is applied
here (encoder_model.py). One request's inputs are spread over the child's slots (`max_batch`
of them), which llama.cpp evaluates together, also with other requests' inputs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from radis_mlx.config import LlamaCppSettings
from radis_mlx.engines.base import EngineInfo
from radis_mlx.engines.child.engine import ChildEngine
from radis_mlx.engines.encoders.tokens import fit, with_special_tokens
from radis_mlx.engines.llamacpp.encoder_model import EncoderModel, encoder_model
from radis_mlx.engines.llamacpp.engine import find_llama_server
from radis_mlx.engines.llamacpp.protocol import (
    Models,
    child_error,
    embedding_vectors,
    embeddings_body,
    tokenize_body,
    tokenized,
)
from radis_mlx.engines.llamacpp.server import API_KEY_ENV
from radis_mlx.errors import InvalidRequestError, ModelLoadError
from radis_mlx.generation.types import EmbeddingResult, RerankResult, Tokenized, check_token_ids

# Tokens of KV cache a causal embedder's child may hold across its slots.
CAUSAL_CONTEXT = 32768


class LlamaCppEncoderEngine(ChildEngine):
    """One embedder or cross-encoder served by a llama.cpp child in embedding mode."""

    child_noun = "the llama.cpp process"

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        kind: str,
        context_length: int | None,
        settings: LlamaCppSettings,
        max_batch: int,
        truncate: bool,
        cache_dir: Path,
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.kind = kind
        self.settings = settings
        self.max_batch = max_batch
        self.truncate = truncate
        self.cache_dir = cache_dir
        self.requested_length = context_length
        self.info = EngineInfo(name="llamacpp", context_length=context_length or 0)
        super().__init__(f"llama.cpp[{model_id}]")
        self._model: EncoderModel | None = None
        self._vocab = 0
        self._prefix: list[int] = []  # the child's special tokens (non-WordPiece GGUFs)
        self._suffix: list[int] = []

    def child_argv(self, port: int) -> list[str]:
        """The child in embedding mode: one slot per input of a batch, each input whole in a micro-batch."""
        model, s = self._require_model(), self.settings
        argv = [sys.executable, "-m", "radis_mlx.engines.llamacpp.server", "--model", str(model.gguf)]
        argv += ["--port", str(port), "--parent-pid", str(os.getpid())]
        # The slots share one context (kv_unified) that holds each slot's longest input. An encoder keeps
        # no KV cache, so that costs nothing; a causal embedder's is bounded, with fewer slots if need be.
        slots = self.max_batch
        if model.causal:
            slots = max(1, min(slots, CAUSAL_CONTEXT // model.max_length))
        argv += ["--embedding", "--pooling", model.pooling, "--parallel", str(slots)]
        argv += ["--ctx-size", str(model.max_length * slots), "--ubatch", str(max(512, model.max_length))]
        argv += ["--threads", str(s.threads or 0), "--gpu-layers", str(s.gpu_layers), "--cache-ram", "0"]
        argv += [] if s.flash_attn else ["--no-flash-attn"]
        binary = find_llama_server(s)
        return [*argv, "--exec", binary] if binary else argv

    async def start(self) -> None:
        self._model = model = await asyncio.to_thread(
            encoder_model,
            self.path,
            self.kind,
            context_length=self.requested_length,
            truncate=self.truncate,
            cache_dir=self.cache_dir,
        )
        # The child's API key by environment, as for an LLM's child (engine.py): only we reach it.
        await self.child.start(self.child_argv, timeout=self.settings.start_timeout, secret_env=API_KEY_ENV)
        self._client = self._new_client(
            timeout=httpx.Timeout(30.0, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        try:
            meta = (
                msgspec.json.decode((await self._client.get("/v1/models")).content, type=Models).data[0].meta
            )
            if model.tokenizer is None:
                self._prefix, self._suffix = await self._child_specials()
        except (httpx.HTTPError, msgspec.DecodeError, IndexError, KeyError) as exc:
            await self.close()
            raise ModelLoadError(f"llama.cpp did not describe {model.gguf.name}: {exc}") from exc
        self._vocab = model.segment_offset or meta.n_vocab
        self.info.context_length = model.max_length
        self.info.size_bytes = meta.size or model.gguf.stat().st_size
        self.info.details = {
            "format": "gguf" if model.gguf == self.path else "safetensors (converted to GGUF)",
            "task": model.task,
            "pid": str(self.child.pid),  # no port: only we talk to it
        }

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        model = self._require_model()
        if model.task != "embedding":
            raise InvalidRequestError(
                "this model is a reranker: use /v1/rerank", param="model", code="model_not_embedding"
            )
        sequences = await self._sequences(inputs)
        vectors = await self._pooled(sequences, normalize=model.normalize)
        return EmbeddingResult(vectors, sum(len(s) for s in sequences))

    async def rerank(self, query: str, documents: list[str]) -> RerankResult:
        model = self._require_model()
        if model.task != "rerank" or model.tokenizer is None:
            return await super().rerank(query, documents)
        pairs = await asyncio.to_thread(model.tokenizer.pairs, query, documents)
        offset = model.segment_offset
        sequences = [
            [i + offset * t for i, t in zip(p.ids, p.type_ids, strict=True)] if offset else p.ids
            for p in pairs
        ]
        first = await self._pooled(sequences, normalize=False)
        scores = model.scores(np.asarray(first, dtype=np.float64))
        return RerankResult([float(s) for s in scores], sum(len(s) for s in sequences))

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        tokenizer = self._require_model().tokenizer
        if tokenizer is None:
            return await self._child_tokenize(text, add_special, with_pieces)
        return await asyncio.to_thread(tokenizer.tokenized, text, add_special, with_pieces)

    async def detokenize(self, tokens: list[int]) -> str:
        check_token_ids(tokens, self._vocab, "tokens")
        tokenizer = self._require_model().tokenizer
        if tokenizer is not None:
            return await asyncio.to_thread(tokenizer.decode, tokens)
        return str((await self._post("/detokenize", {"tokens": tokens}, "tokens")).json()["content"])

    async def _sequences(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        """Every input as fitted token ids, special tokens included."""
        model = self._require_model()
        if model.tokenizer is not None:
            return await asyncio.to_thread(model.tokenizer.sequences, inputs)
        items: list[str | list[int]] = list(inputs)
        texts = [x for x in items if isinstance(x, str)]
        encoded = iter(await asyncio.gather(*(self._child_tokenize(t, True, False) for t in texts)))
        sequences = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                ids = next(encoded).ids
            else:
                check_token_ids(item, self._vocab, "input")
                ids = with_special_tokens(item, self._prefix, self._suffix)
            sequences.append(fit(ids, model.max_length, self._suffix, self.truncate, index))
        return sequences

    async def _pooled(self, sequences: list[list[int]], *, normalize: bool) -> list[list[float]]:
        response = await self._post("/v1/embeddings", embeddings_body(sequences, normalize), "input")
        return embedding_vectors(response.content, len(sequences))

    async def _child_tokenize(self, text: str, add_special: bool, with_pieces: bool) -> Tokenized:
        body = msgspec.json.encode(tokenize_body(text, add_special, with_pieces))
        return tokenized((await self._post("/tokenize", body, "input")).content, with_pieces)

    async def _child_specials(self) -> tuple[list[int], list[int]]:
        """The child's special tokens around a text (llama.cpp's add_bos / add_eos)."""
        full = (await self._child_tokenize("a", True, False)).ids
        core = (await self._child_tokenize("a", False, False)).ids
        at = next((i for i in range(len(full) - len(core) + 1) if full[i : i + len(core)] == core), 0)
        return full[:at], full[at + len(core) :]

    async def _post(self, path: str, body: bytes | dict[str, Any], param: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        try:
            response = await self._require_client().post(
                path, content=content, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.status_code != 200:
            raise child_error(response.status_code, response.content, param)
        return response

    def _require_model(self) -> EncoderModel:
        if self._model is None:
            raise ModelLoadError(f"{self.model_id} is not loaded")
        return self._model
