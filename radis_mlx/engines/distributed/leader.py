"""Rank 0 of a distributed MLX model: the request logic, in step with the followers.

Everything that can refuse a request (template, context length, token ids, grammar) runs before
anything is broadcast, so a bad request never leaves the group half way through a collective. Once
generation starts, each response from mlx-lm's stream_generate is answered by exactly one control
all_sum (wire.control), whatever happens to the request meanwhile.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from radis_mlx.engines.distributed.wire import GENERATE, Job, control, share
from radis_mlx.engines.mlx.grammar_mask import GrammarMask
from radis_mlx.engines.mlx.prompt import GuidanceTokenizer, prompt_param, prompt_tokens
from radis_mlx.engines.mlx.sampling import GuardedProcessors, sampling
from radis_mlx.errors import EngineError, EngineUnavailableError, InvalidRequestError, RadisError
from radis_mlx.generation.grammar import constraint_grammar
from radis_mlx.generation.stops import StopBuffer
from radis_mlx.generation.types import GenerationChunk, check_token_ids, completion_room

if TYPE_CHECKING:
    from radis_mlx.engines.distributed.doorbell import Doorbell

log = logging.getLogger("radis_mlx.distributed.rank")


def error_line(exc: BaseException) -> dict[str, Any]:
    """An error as the line rank 0 sends back; engine.py raises it again."""
    error = exc if isinstance(exc, RadisError) else EngineError(f"{type(exc).__name__}: {exc}")
    fields = {"message": error.message, "type": error.type, "param": error.param, "code": error.code}
    return {"error": {**fields, "status": error.status_code}}


class Leader:
    """Rank 0's model and tokenizer, running one job at a time on the main thread."""

    def __init__(self, model: Any, tokenizer: Any, context_length: int, doorbell: Doorbell | None) -> None:
        self.doorbell = doorbell
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length
        self._guidance = GuidanceTokenizer(tokenizer)

    def run(self, job: Job) -> None:
        """Validate, then generate; every outcome ends the job's stream with None."""
        try:
            prompt, max_tokens = self._prompt(job)
            sampler, processors = sampling(job.request.sampling)
            grammar = constraint_grammar(
                job.request.json_schema, job.request.grammar or job.request.output_grammar
            )
            if grammar is not None:
                processors.append(GrammarMask(self._guidance.get(), grammar, len(prompt)))
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
        prompt = prompt_tokens(self.tokenizer, request, job.chat_template, job.parse_special)
        if request.max_tokens is not None and request.max_tokens < 1:
            # mlx-lm would raise only after the group has started the request
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        max_tokens = completion_room(
            self.context_length, len(prompt), request.max_tokens, prompt_param(request)
        )
        check_token_ids(list(request.sampling.logit_bias), len(self.tokenizer.vocab), "logit_bias")
        return prompt, max_tokens

    def _generate(
        self, job: Job, prompt: list[int], max_tokens: int, sampler: Any, guard: GuardedProcessors
    ) -> None:
        import mlx.core as mx
        import mlx_lm

        if self.doorbell is not None:
            self.doorbell.ring()
        mx.eval(share(mx.array([GENERATE, len(prompt), max_tokens, 0]), leader=True))
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
            chunk = GenerationChunk(text, finish, prompt, response.generation_tokens)
            chunk.tokens = response.generation_tokens - job.emitted
            job.out.put(chunk)
            return True
        if text:
            chunk = GenerationChunk(text, tokens=response.generation_tokens - job.emitted)
            if not job.emitted:
                chunk.prompt_tokens = prompt
            job.emitted = response.generation_tokens
            job.out.put(chunk)
        return False
