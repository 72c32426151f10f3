"""LLMs on MLX through mlx-lm: MLX-format folders, and GGUF files converted once on load."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from radis_mlx.engines.base import (
    EmbeddingResult,
    EngineInfo,
    GenerationChunk,
    GenerationRequest,
    TokenLogprob,
    completion_room,
)
from radis_mlx.engines.batching import BatchScheduler, Job
from radis_mlx.engines.chat_template import render_tokens
from radis_mlx.engines.grammar import GrammarMask, schema_grammar
from radis_mlx.engines.sampling import sampling as _sampling
from radis_mlx.engines.worker import Emitter, ModelWorker, WorkerEngine
from radis_mlx.errors import (
    ContextLengthExceeded,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
    RadisError,
)

log = logging.getLogger(__name__)


class MlxLlmEngine(WorkerEngine):
    """mlx-lm's model and tokenizer, owned by one worker thread that steps a BatchScheduler."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        context_length: int | None,
        cache_dir: Path,
        prompt_cache_bytes: int = 0,
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.cache_dir = cache_dir
        self.prompt_cache_bytes = prompt_cache_bytes
        self.info = EngineInfo(name="mlx", context_length=context_length or 0)
        self._worker = ModelWorker(name=f"mlx:{model_id}")
        self._model: Any = None
        self._tokenizer: Any = None
        self._ll_tokenizer: Any = None  # llguidance's view of the tokenizer, built on first use
        self._scheduler: BatchScheduler | None = None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._worker.stream(partial(self._generate, request))

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_token_ids(tokens, "prompt")
        return await self._worker.call(self._tokenizer.decode, tokens)

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        """Mean-pooled, L2-normalized last hidden state per input (entries with embeddings = true)."""
        return await self._worker.call(self._embed, inputs)

    def stats(self) -> dict[str, int]:
        return self._scheduler.stats() if self._scheduler is not None else {}

    # Everything below runs on the worker thread.

    def _load(self) -> None:
        import mlx.core as mx
        import mlx.utils
        import mlx_lm

        folder = self.path
        if folder.suffix == ".gguf":
            from radis_mlx.engines.gguf_to_mlx import convert_gguf

            folder = convert_gguf(folder, self.cache_dir)
        try:
            loaded = mlx_lm.load(str(folder))
            self._model, self._tokenizer = loaded[0], loaded[1]
            _keep_leading_space(self._tokenizer)
        except RadisError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"mlx-lm could not load {self.path.name}: {exc}") from exc
        trained_context = _trained_context(folder)
        limit = self.info.context_length
        self.info.context_length = min(limit, trained_context) if limit else trained_context
        parameters: list[tuple[str, Any]] = mlx.utils.tree_flatten(self._model.parameters())  # type: ignore[assignment]
        self.info.size_bytes = sum(v.nbytes for _, v in parameters)
        self.info.details = {"format": "gguf" if self.path.suffix == ".gguf" else "mlx"}
        mx.eval(self._model.parameters())
        self._scheduler = BatchScheduler(
            self._model, self._tokenizer, prompt_cache_bytes=self.prompt_cache_bytes, score=self._score
        )
        self._worker.stepper = self._scheduler

    def _unload(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
        self._worker.stepper = self._scheduler = None
        super()._unload()

    def _prompt_tokens(self, request: GenerationRequest) -> list[int]:
        tokenizer = self._tokenizer
        if request.messages is not None:
            return render_tokens(tokenizer, request, self.chat_template)
        if isinstance(request.prompt, str):
            return list(tokenizer.encode(request.prompt))
        tokens = list(request.prompt or [])
        self._check_token_ids(tokens, "prompt")
        return tokens

    def _check_token_ids(self, tokens: list[int], param: str) -> None:
        vocab = len(self._tokenizer.vocab) if self._tokenizer is not None else 0
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param=param
            )

    def _generate(self, request: GenerationRequest, emitter: Emitter[GenerationChunk]) -> None:
        """Validate and join the batch; the scheduler streams the chunks and finishes the emitter."""
        if self._scheduler is None:
            raise EngineUnavailableError("the model is not loaded")
        prompt = self._prompt_tokens(request)
        param = "messages" if request.messages is not None else "prompt"
        max_tokens = completion_room(self.info.context_length, len(prompt), request.max_tokens, param)
        self._check_token_ids(list(request.sampling.logit_bias), "logit_bias")
        sampler, processors = _sampling(request.sampling)
        if request.json_schema is not None:
            # Last, so no bias or penalty can bring back a token the grammar forbids.
            grammar = schema_grammar(request.json_schema)
            processors.append(GrammarMask(self._llguidance_tokenizer(), grammar, len(prompt)))
        job = Job(prompt, max_tokens, sampler, processors, request.stop, request.logprobs)
        self._scheduler.submit(job, emitter)

    def _llguidance_tokenizer(self) -> Any:
        if self._ll_tokenizer is None:
            import llguidance.hf

            self._ll_tokenizer = llguidance.hf.from_tokenizer(self._tokenizer._tokenizer)
        return self._ll_tokenizer

    def _score(self, token: int, logprobs: Any, top: int) -> TokenLogprob:
        """The chosen token's logprob and the `top` most likely tokens, from mlx-lm's log-softmax."""
        import mlx.core as mx

        logprobs = logprobs.astype(mx.float32)
        alternatives: list[TokenLogprob] = []
        if top:
            ids = mx.argpartition(-logprobs, kth=top - 1)[:top]
            values = logprobs[ids]
            order = mx.argsort(-values)
            top_ids: list[int] = ids[order].tolist()  # type: ignore[assignment]
            top_values: list[float] = values[order].tolist()
            for tid, value in zip(top_ids, top_values, strict=True):
                if value != float("-inf"):  # a token the grammar forbids is no alternative
                    alternatives.append(self._token_logprob(tid, value))
        entry = self._token_logprob(token, logprobs[token].item())
        entry.top = alternatives
        return entry

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        raw = self._llguidance_tokenizer().decode_bytes([token])
        return TokenLogprob(raw.decode(errors="replace"), logprob, raw)

    def _embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        import mlx.core as mx

        backbone = getattr(self._model, "model", None)
        if backbone is None:
            raise InvalidRequestError("this model exposes no hidden states to embed", param="model")
        vectors, total = [], 0
        # One input per pass: no padding or mask to get wrong for a causal model.
        items: list[str | list[int]] = list(inputs)
        for index, item in enumerate(items):
            tokens: list[int] = list(self._tokenizer.encode(item)) if isinstance(item, str) else list(item)
            self._check_token_ids(tokens, "input")
            if len(tokens) > self.info.context_length:
                raise ContextLengthExceeded(
                    f"input[{index}] has {len(tokens)} tokens; this model's maximum is "
                    f"{self.info.context_length} tokens",
                    param="input",
                )
            pooled = backbone(mx.array(tokens)[None])[0].astype(mx.float32).mean(axis=0)
            pooled = pooled / mx.maximum(mx.linalg.norm(pooled), 1e-12)
            vectors.append(pooled.tolist())
            total += len(tokens)
        return EmbeddingResult(vectors, total)


def _trained_context(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text())
    return int(config.get("max_position_embeddings") or config.get("max_seq_len") or 4096)


def _keep_leading_space(tokenizer: Any) -> None:
    """Stream ' Paris' after 'The capital of France is', as OpenAI and llama.cpp do.

    mlx-lm's streaming detokenizers drop the first token's leading space (right for a chat
    reply shown alone, wrong for a completion that continues its prompt).
    """
    detokenizer = tokenizer._detokenizer  # per-request copies are made from this one
    if hasattr(detokenizer, "trim_space"):
        detokenizer.trim_space = False
    if hasattr(detokenizer, "_maybe_trim_space"):
        detokenizer._maybe_trim_space = lambda text: text
