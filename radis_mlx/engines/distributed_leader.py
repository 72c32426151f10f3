"""Rank 0 of a distributed MLX model: the request logic, in step with the followers.

Everything that can refuse a request (template, context length, token ids, grammar) runs before
anything is broadcast, so a bad request never leaves the group half way through a collective. Once
generation starts, each response from mlx-lm's stream_generate is answered by exactly one control
all_sum (distributed_worker.control), whatever happens to the request meanwhile.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from radis_mlx.engines.base import GenerationChunk, completion_room
from radis_mlx.engines.chat_template import render_tokens
from radis_mlx.engines.grammar import GrammarMask, schema_grammar
from radis_mlx.engines.sampling import GuardedProcessors, sampling
from radis_mlx.engines.stops import StopBuffer
from radis_mlx.errors import (
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
    RadisError,
)

if TYPE_CHECKING:
    from radis_mlx.engines.distributed_worker import Job
    from radis_mlx.engines.doorbell import Doorbell

log = logging.getLogger("radis_mlx.distributed_worker")


def error_line(exc: BaseException) -> dict[str, Any]:
    """An error as the line rank 0 sends back; mlx_distributed.py raises it again."""
    error = exc if isinstance(exc, RadisError) else EngineError(f"{type(exc).__name__}: {exc}")
    return {"error": {**error.to_body()["error"], "status": error.status_code}}


class Leader:
    """Rank 0's model and tokenizer, running one job at a time on the main thread."""

    def __init__(self, model: Any, tokenizer: Any, context_length: int, doorbell: Doorbell | None) -> None:
        self.doorbell = doorbell
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length
        self._ll_tokenizer: Any = None

    def run(self, job: Job) -> None:
        """Validate, then generate; every outcome ends the job's stream with None."""
        try:
            prompt, max_tokens = self._prompt(job)
            sampler, processors = sampling(job.request.sampling)
            if job.request.json_schema is not None:
                grammar = schema_grammar(job.request.json_schema)
                processors.append(GrammarMask(self._llguidance_tokenizer(), grammar, len(prompt)))
        except Exception as exc:
            job.out.put(error_line(exc))
            job.out.put(None)
            return
        try:
            self._generate(job, prompt, max_tokens, sampler, GuardedProcessors(processors))
        except Exception as exc:
            # mlx-lm itself failed mid-step: the ranks may be out of step, so the group must restart.
            log.exception("generation failed inside mlx-lm; leaving so the group restarts")
            # Mostly "[ring] connection to a peer was lost": a rank died, so the group is going away.
            lost = EngineUnavailableError(
                f"the distributed group failed mid-generation ({type(exc).__name__}: {exc}); "
                "it restarts on the next request"
            )
            job.out.put(error_line(lost))
            job.out.put(None)
            job.sent.wait(2.0)
            os._exit(1)
        job.out.put(None)

    def _prompt(self, job: Job) -> tuple[list[int], int]:
        request = job.request
        if request.logprobs is not None:
            raise InvalidRequestError(
                "logprobs are not supported on distributed models yet", param="logprobs"
            )
        if request.messages is not None:
            prompt = render_tokens(self.tokenizer, request, job.chat_template)
        elif isinstance(request.prompt, str):
            prompt = list(self.tokenizer.encode(request.prompt))
        else:
            prompt = list(request.prompt or [])
            self._check_token_ids(prompt, "prompt")
        if request.max_tokens is not None and request.max_tokens < 1:
            # mlx-lm would raise only after the group has started the request
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        param = "messages" if request.messages is not None else "prompt"
        max_tokens = completion_room(self.context_length, len(prompt), request.max_tokens, param)
        self._check_token_ids(list(request.sampling.logit_bias), "logit_bias")
        return prompt, max_tokens

    def _check_token_ids(self, tokens: list[int], param: str) -> None:
        vocab = len(self.tokenizer.vocab)
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param=param
            )

    def _generate(
        self, job: Job, prompt: list[int], max_tokens: int, sampler: Any, guard: GuardedProcessors
    ) -> None:
        import mlx.core as mx
        import mlx_lm

        from radis_mlx.engines.distributed_worker import _GENERATE, control, share

        if self.doorbell is not None:
            self.doorbell.ring()
        mx.eval(share(mx.array([_GENERATE, len(prompt), max_tokens, 0]), leader=True))
        tokens = share(mx.array(prompt), leader=True)
        mx.eval(tokens)

        def lead_token(logprobs: Any) -> Any:
            return share(sampler(logprobs), leader=True)

        stops = StopBuffer(job.request.stop)
        responses = mlx_lm.stream_generate(
            self.model,
            self.tokenizer,
            tokens,
            max_tokens,
            sampler=lead_token,
            logits_processors=[guard] if guard.processors else None,
        )
        for response in responses:
            stop = True
            try:
                stop = self._emit(job, response, stops, guard, len(prompt))
            finally:
                control(stop, leader=True)  # one per response, even when _emit raised
            if stop:
                return

    def _emit(
        self, job: Job, response: Any, stops: StopBuffer, guard: GuardedProcessors, prompt: int
    ) -> bool:
        """Send what this response adds; True when the generation ends here."""
        if job.cancelled.is_set():
            return True
        if guard.error is not None:
            job.out.put(error_line(guard.error))
            return True
        text = stops.feed(response.text)
        finish = "stop" if stops.stopped else response.finish_reason
        if finish is not None:
            text += stops.flush()
            job.out.put(GenerationChunk(text, finish, prompt, response.generation_tokens))
            return True
        if text:
            job.out.put(GenerationChunk(text))
        return False

    def _llguidance_tokenizer(self) -> Any:
        if self._ll_tokenizer is None:
            import llguidance.hf

            self._ll_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer._tokenizer)
        return self._ll_tokenizer
