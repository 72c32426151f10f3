"""LLMs on MLX through mlx-lm: MLX-format folders, and GGUF files converted once on load."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from radis_mlx.engines.base import EngineInfo
from radis_mlx.engines.mlx.batching import BatchScheduler, Job
from radis_mlx.engines.mlx.grammar_mask import GrammarMask
from radis_mlx.engines.mlx.kv_disk import MlxDiskTier
from radis_mlx.engines.mlx.prompt import (
    GuidanceTokenizer,
    keep_leading_space,
    message_boundaries,
    prompt_param,
    prompt_tokens,
    trained_context,
)
from radis_mlx.engines.mlx.sampling import sampling as _sampling
from radis_mlx.engines.mlx.thread import Emitter, ModelThread, ThreadedEngine
from radis_mlx.errors import (
    ContextLengthExceeded,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
    RadisError,
)
from radis_mlx.generation.grammar import constraint_grammar
from radis_mlx.generation.types import (
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    Tokenized,
    TokenLogprob,
    check_token_ids,
    completion_room,
)
from radis_mlx.store.gguf import is_gguf

log = logging.getLogger(__name__)


class MlxLlmEngine(ThreadedEngine):
    """mlx-lm's model and tokenizer, owned by one model thread that steps a BatchScheduler."""

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        context_length: int | None,
        cache_dir: Path,
        prompt_cache_bytes: int = 0,
        prompt_cache_disk_bytes: int = 0,
        kv_dir: Path | None = None,
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.cache_dir = cache_dir
        self.prompt_cache_bytes = prompt_cache_bytes
        self.prompt_cache_disk_bytes = prompt_cache_disk_bytes
        self.kv_dir = kv_dir or cache_dir / "kv"
        self.info = EngineInfo(name="mlx", context_length=context_length or 0)
        self._thread = ModelThread(name=f"mlx:{model_id}")
        self._model: Any = None
        self._tokenizer: Any = None
        self._guidance: GuidanceTokenizer | None = None
        self._scheduler: BatchScheduler | None = None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._thread.stream(partial(self._generate, request))

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_token_ids(tokens, "prompt")
        return await self._thread.call(self._tokenizer.decode, tokens)

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        return await self._thread.call(self._tokenize, text, add_special, with_pieces)

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        """Mean-pooled, L2-normalized last hidden state per input (entries with embeddings = true)."""
        return await self._thread.call(self._embed, inputs)

    def stats(self) -> dict[str, int]:
        return self._scheduler.stats() if self._scheduler is not None else {}

    # Everything below runs on the model thread.

    def _load(self) -> None:
        import mlx.core as mx
        import mlx.utils
        import mlx_lm

        folder = self.path
        if is_gguf(folder):
            from radis_mlx.engines.mlx.gguf_to_mlx import convert_gguf

            folder = convert_gguf(folder, self.cache_dir)
        try:
            loaded = mlx_lm.load(str(folder))
            self._model, self._tokenizer = loaded[0], loaded[1]
            keep_leading_space(self._tokenizer)
            self._guidance = GuidanceTokenizer(self._tokenizer)
        except RadisError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"mlx-lm could not load {self.path.name}: {exc}") from exc
        trained = trained_context(folder)
        limit = self.info.context_length
        self.info.context_length = min(limit, trained) if limit else trained
        parameters: list[tuple[str, Any]] = mlx.utils.tree_flatten(self._model.parameters())  # type: ignore[assignment]
        self.info.size_bytes = sum(v.nbytes for _, v in parameters)
        self.info.details = {"format": "gguf" if is_gguf(self.path) else "mlx"}
        mx.eval(self._model.parameters())
        disk = None
        if self.prompt_cache_bytes and self.prompt_cache_disk_bytes:
            disk = MlxDiskTier(self.kv_dir, folder, self.path, self.prompt_cache_disk_bytes)
        self._scheduler = BatchScheduler(
            self._model,
            self._tokenizer,
            prompt_cache_bytes=self.prompt_cache_bytes,
            score=self._score,
            disk=disk,
        )
        self._thread.stepper = self._scheduler

    def _unload(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
        self._thread.stepper = self._scheduler = None
        super()._unload()

    def _check_token_ids(self, tokens: list[int], param: str) -> None:
        vocab = len(self._tokenizer.vocab) if self._tokenizer is not None else 0
        check_token_ids(tokens, vocab, param)

    def _generate(self, request: GenerationRequest, emitter: Emitter[GenerationChunk]) -> None:
        """Validate and join the batch; the scheduler streams the chunks and finishes the emitter."""
        if self._scheduler is None:
            raise EngineUnavailableError("the model is not loaded")
        self._scheduler.submit(self._job(request), emitter)

    def _job(self, request: GenerationRequest) -> Job:
        """The request as the scheduler runs it: its prompt tokens, room, sampler and processors."""
        prompt = prompt_tokens(self._tokenizer, request, self.chat_template, self.parse_special)
        job = self._job_for(request, prompt)
        scheduler = self._scheduler
        if (
            request.messages is not None
            and scheduler is not None
            and scheduler.prompt_cache.wants_checkpoints()
        ):
            job.boundaries = message_boundaries(
                self._tokenizer, request, self.chat_template, prompt, self.parse_special
            )
        return job

    def _job_for(self, request: GenerationRequest, prompt: list[int]) -> Job:
        max_tokens = completion_room(
            self.info.context_length, len(prompt), request.max_tokens, prompt_param(request)
        )
        self._check_token_ids(list(request.sampling.logit_bias), "logit_bias")
        sampler, processors = _sampling(request.sampling)
        grammar = constraint_grammar(request.json_schema, request.grammar or request.output_grammar)
        if grammar is not None:
            # Last, so no bias or penalty can bring back a token the grammar forbids.
            processors.append(GrammarMask(self._llguidance_tokenizer(), grammar, len(prompt)))
        return Job(prompt, max_tokens, sampler, processors, request.stop, request.logprobs)

    def _tokenize(self, text: str, add_special: bool, with_pieces: bool) -> Tokenized:
        """The ids prompt_tokens makes of a text prompt (special tokens in the text parsed, as there)."""
        ids = list(self._tokenizer.encode(text, add_special_tokens=add_special))
        pieces = [self._llguidance_tokenizer().decode_bytes([t]) for t in ids] if with_pieces else None
        return Tokenized(ids, pieces)

    def _llguidance_tokenizer(self) -> Any:
        assert self._guidance is not None
        return self._guidance.get()

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
