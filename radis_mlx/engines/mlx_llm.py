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
    SamplingParams,
    TokenLogprob,
)
from radis_mlx.engines.grammar import GrammarMask, schema_grammar
from radis_mlx.engines.logprobs import LogprobQueue
from radis_mlx.engines.stops import StopBuffer
from radis_mlx.engines.worker import Emitter, ModelWorker, WorkerEngine
from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError, ModelLoadError, RadisError

log = logging.getLogger(__name__)


class MlxLlmEngine(WorkerEngine):
    """mlx-lm's model and tokenizer, owned by one worker thread."""

    def __init__(self, model_id: str, path: Path, *, context_length: int | None, cache_dir: Path) -> None:
        self.model_id = model_id
        self.path = path
        self.cache_dir = cache_dir
        self.info = EngineInfo(name="mlx", context_length=context_length or 0)
        self._worker = ModelWorker(name=f"mlx:{model_id}")
        self._model: Any = None
        self._tokenizer: Any = None
        self._ll_tokenizer: Any = None  # llguidance's view of the tokenizer, built on first use

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._worker.stream(partial(self._generate, request))

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_token_ids(tokens, "prompt")
        return await self._worker.call(self._tokenizer.decode, tokens)

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        """Mean-pooled, L2-normalized last hidden state per input (entries with embeddings = true)."""
        return await self._worker.call(self._embed, inputs)

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

    def _prompt_tokens(self, request: GenerationRequest) -> list[int]:
        tokenizer = self._tokenizer
        if request.messages is not None:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(tokenizer.encode(text, add_special_tokens=False))
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
        import mlx.core as mx
        import mlx_lm

        prompt = self._prompt_tokens(request)
        if not prompt:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        room = self.info.context_length - len(prompt)
        max_tokens = request.max_tokens if request.max_tokens is not None else room
        if room <= 0 or max_tokens > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.info.context_length} tokens. "
                f"However, you requested {len(prompt) + max_tokens} tokens "
                f"({len(prompt)} in the messages, {max_tokens} in the completion).",
                param="messages" if request.messages is not None else "prompt",
            )
        self._check_token_ids(list(request.sampling.logit_bias), "logit_bias")
        sampler, processors = _sampling(request.sampling)
        if request.json_schema is not None:
            # Last, so no bias or penalty can bring back a token the grammar forbids.
            grammar = schema_grammar(request.json_schema)
            processors.append(GrammarMask(self._llguidance_tokenizer(), grammar, len(prompt)))
        if request.sampling.seed is not None:
            mx.random.seed(request.sampling.seed)

        stops = StopBuffer(request.stop)
        scored = LogprobQueue() if request.logprobs is not None else None
        responses = mlx_lm.stream_generate(
            self._model, self._tokenizer, prompt, max_tokens, sampler=sampler, logits_processors=processors
        )
        for response in responses:
            # The final response of a generation that hit EOS carries the EOS token: not part of the text.
            if scored is not None and response.finish_reason != "stop":
                scored.add(self._score(response.token, response.logprobs, request.logprobs or 0))
            text = stops.feed(response.text)
            finish = "stop" if stops.stopped else response.finish_reason
            if finish is not None:
                text += stops.flush()
                chunk = GenerationChunk(text, finish, len(prompt), response.generation_tokens)
                chunk.logprobs = scored.finish(text, stops.stopped) if scored is not None else None
                emitter.emit(chunk)
                return
            if emitter.cancelled:
                return
            if text:
                emitter.emit(GenerationChunk(text, logprobs=scored.take(text) if scored else None))

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


def _sampling(params: SamplingParams) -> tuple[Any, list[Any]]:
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    sampler = make_sampler(
        temp=params.temperature, top_p=params.top_p, min_p=params.min_p, top_k=params.top_k
    )
    processors = make_logits_processors(
        logit_bias=params.logit_bias or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        presence_penalty=params.presence_penalty or None,
        frequency_penalty=params.frequency_penalty or None,
    )
    return sampler, processors


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
