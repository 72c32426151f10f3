"""Continuous batching for one MLX model: mlx-lm's BatchGenerator, stepped on the model's thread.

Requests join (insert) and leave (finish, stop string, cancel, error) between decode steps; each
keeps its own sampler, processors, stop strings, logprobs and detokenizer. A finished request's
KV cache goes to the PromptCache, and a new request starts from its longest cached prefix.
Everything here runs on the model thread; stats() is read from the event loop (plain ints).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from radis_mlx.engines.mlx.kv_disk import MlxDiskTier
from radis_mlx.engines.mlx.prompt_cache import PromptCache
from radis_mlx.engines.mlx.sampling import GuardedProcessors
from radis_mlx.engines.mlx.thread import Emitter
from radis_mlx.errors import EngineError, EngineUnavailableError, RadisError
from radis_mlx.generation.logprobs import LogprobQueue
from radis_mlx.generation.stops import StopBuffer
from radis_mlx.generation.types import GenerationChunk, TokenLogprob

log = logging.getLogger(__name__)

Scorer = Callable[[int, Any, int], TokenLogprob]


@dataclass
class Job:
    """One generation as the scheduler needs it: tokens in, limits, and how to sample."""

    prompt: list[int]
    max_tokens: int
    sampler: Any
    processors: list[Any]
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None
    # Message boundaries in the prompt, (token count, kind): where prompt-cache checkpoints are taken.
    boundaries: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Slot:
    emitter: Emitter[GenerationChunk]
    prompt_tokens: int
    cached_tokens: int
    detokenizer: Any
    stops: StopBuffer
    guard: GuardedProcessors | None
    top_logprobs: int | None
    scored: LogprobQueue | None
    generated: int = 0
    emitted: int = 0  # of generated, the tokens chunks were sent for


class BatchScheduler:
    """Steps a BatchGenerator while any request is in it; the model thread calls submit() and step()."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        prompt_cache_bytes: int,
        score: Scorer,
        max_batch: int = 32,
        disk: MlxDiskTier | None = None,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._score = score
        self._max_batch = max_batch
        self.prompt_cache = PromptCache(prompt_cache_bytes, disk)
        self._slots: dict[int, _Slot] = {}
        self._checkpoints: dict[int, list[str]] = {}  # per request: the kinds of its boundaries still ahead
        self._generator = self._new_generator()
        self.finished = 0
        self.cancelled = 0
        self.failed = 0

    @property
    def busy(self) -> bool:
        return bool(self._slots)

    def submit(self, job: Job, emitter: Emitter[GenerationChunk]) -> None:
        """Queue a generation; it is prefilled and decoded by the next steps."""
        cache, cached = self.prompt_cache.fetch(job.prompt)
        guard = GuardedProcessors(job.processors) if job.processors else None
        cuts = [(n, kind) for n, kind in job.boundaries if cached < n < len(job.prompt) - 1]
        if not self.prompt_cache.wants_checkpoints():
            cuts = []
        edges = [cached, *(n for n, _ in cuts), len(job.prompt)]
        (uid,) = self._generator.insert_segments(
            [[job.prompt[a:b] for a, b in itertools.pairwise(edges)]],
            max_tokens=[job.max_tokens],
            caches=[cache],
            all_tokens=[job.prompt[:cached]],
            samplers=[job.sampler],
            logits_processors=[[guard] if guard else []],
        )
        self._slots[uid] = _Slot(
            emitter,
            len(job.prompt),
            cached,
            self._tokenizer.detokenizer,
            StopBuffer(job.stop),
            guard,
            job.logprobs,
            LogprobQueue() if job.logprobs is not None else None,
        )
        if cuts:
            self._checkpoints[uid] = [kind for _, kind in cuts]

    def step(self) -> None:
        """Drop cancelled requests, then one prefill chunk or decode step for the batch."""
        gone = [uid for uid, slot in self._slots.items() if slot.emitter.cancelled]
        if gone:
            self._leave(gone, keep_cache=False)
            self.cancelled += len(gone)
        if not self._slots:
            return
        try:
            prefilled, responses = self._generator.next()
            self._take_checkpoints(prefilled)
        except Exception as exc:  # the batch's state is unknown now: fail it and start afresh
            log.exception("batched generation failed")
            self._fail_all(EngineError(f"generation failed: {type(exc).__name__}: {exc}"))
            self._generator.close()
            self._generator = self._new_generator()
            return
        for response in responses:
            slot = self._slots.get(response.uid)
            if slot is None:
                continue
            try:
                self._advance(response, slot)
            except Exception as exc:  # a bug in one request's bookkeeping ends that request only
                log.exception("generation step failed for one request")
                self._drop(response.uid, slot, EngineError(f"generation failed: {type(exc).__name__}: {exc}"))

    def close(self) -> None:
        """End every request (the model unloads), keep the prompt cache on disk, release the generator."""
        self._fail_all(EngineUnavailableError("the model was unloaded during the request"))
        self._generator.close()
        self.prompt_cache.persist()

    def _take_checkpoints(self, prefilled: list[Any]) -> None:
        """Prefill stopped at a message boundary: keep the cache of the prompt so far."""
        ended = [
            r.uid
            for r in prefilled
            if r.end_of_segment and not r.end_of_prompt and self._checkpoints.get(r.uid)
        ]
        if not ended:
            return
        for uid, (cache, tokens) in self._generator.extract_cache(ended).items():
            kind = self._checkpoints[uid].pop(0)
            self.prompt_cache.checkpoint(list(tokens), cache, kind)

    def stats(self) -> dict[str, int]:
        """Counts for /api/v0/models/loaded: requests waiting for their first token, decoding, done."""
        slots = list(self._slots.values())  # one atomic copy: the model thread changes the dict
        waiting = sum(1 for slot in slots if slot.generated == 0)
        return {
            "waiting": waiting,
            "active": len(slots) - waiting,
            "finished": self.finished,
            "cancelled": self.cancelled,
            "failed": self.failed,
            **self.prompt_cache.stats(),
        }

    def _advance(self, response: Any, slot: _Slot) -> None:
        if slot.guard is not None and slot.guard.error is not None:  # e.g. the grammar rejected a token
            error = slot.guard.error
            self._drop(
                response.uid, slot, error if isinstance(error, RadisError) else EngineError(str(error))
            )
            return
        slot.generated += 1
        eos = response.finish_reason == "stop"  # the generator's only stop sequences are EOS tokens
        if not eos:  # EOS is no part of the text or its logprobs
            slot.detokenizer.add_token(response.token)
            if slot.scored is not None:
                slot.scored.add(self._score(response.token, response.logprobs, slot.top_logprobs or 0))
        if response.finish_reason is not None:
            slot.detokenizer.finalize()
        text = slot.stops.feed(slot.detokenizer.last_segment)
        finish = "stop" if slot.stops.stopped else response.finish_reason
        if finish is None:
            if text:
                logprobs = slot.scored.take(text) if slot.scored is not None else None
                chunk = GenerationChunk(text, logprobs=logprobs, tokens=slot.generated - slot.emitted)
                if not slot.emitted:  # the first chunk tells the prompt's size (Anthropic's message_start)
                    chunk.prompt_tokens, chunk.cached_tokens = slot.prompt_tokens, slot.cached_tokens
                slot.emitted = slot.generated
                slot.emitter.emit(chunk)
            return
        text += slot.stops.flush()
        chunk = GenerationChunk(
            text,
            finish,
            slot.prompt_tokens,
            slot.generated,
            cached_tokens=slot.cached_tokens,
            tokens=slot.generated - slot.emitted,
        )
        chunk.logprobs = slot.scored.finish(text, slot.stops.stopped) if slot.scored is not None else None
        if response.finish_reason is not None:  # the generator has let it go already
            del self._slots[response.uid]
            self._checkpoints.pop(response.uid, None)
            self.prompt_cache.insert(response.all_tokens, response.prompt_cache)
        else:
            self._leave([response.uid], keep_cache=True)
        self.finished += 1
        slot.emitter.emit(chunk)
        slot.emitter.finish()

    def _leave(self, uids: list[int], *, keep_cache: bool) -> None:
        caches = self._generator.remove(uids, return_prompt_caches=keep_cache)
        for uid in uids:
            self._slots.pop(uid, None)
            self._checkpoints.pop(uid, None)
        for cache, tokens in caches.values():
            self.prompt_cache.insert(tokens, cache)

    def _drop(self, uid: int, slot: _Slot, error: Exception) -> None:
        if uid in self._slots:
            self._leave([uid], keep_cache=False)
        self.failed += 1
        slot.emitter.finish(error)

    def _fail_all(self, error: Exception) -> None:
        slots, self._slots = self._slots, {}
        self.failed += len(slots)
        for slot in slots.values():
            slot.emitter.finish(error)

    def _new_generator(self) -> Any:
        from mlx_lm.generate import BatchGenerator

        eos = [[token] for token in self._tokenizer.eos_token_ids]
        # Prefill in 512-token chunks: decoding requests wait for at most one chunk.
        return BatchGenerator(
            self._model,
            stop_tokens=eos,
            completion_batch_size=self._max_batch,
            prefill_batch_size=min(8, self._max_batch),
            prefill_step_size=512,
        )
