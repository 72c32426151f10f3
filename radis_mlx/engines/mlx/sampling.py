"""OpenAI sampling fields → one mlx-lm sampler and logits processors per request.

Requests share a batch, so nothing here touches MLX's global state: a seeded request draws from
its own PRNG key, and a failing processor fails its own request, not the batch.
"""

from __future__ import annotations

from typing import Any

from radis_mlx.generation.types import SamplingParams


def sampling(params: SamplingParams) -> tuple[Any, list[Any]]:
    """The request's sampler and its logits processors (penalties, logit_bias)."""
    from mlx_lm.sample_utils import greedy_sampler, make_logits_processors

    processors = make_logits_processors(
        logit_bias=params.logit_bias or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        presence_penalty=params.presence_penalty or None,
        frequency_penalty=params.frequency_penalty or None,
    )
    # The one shared greedy function lets mlx-lm sample an all-greedy batch in a single call.
    sampler = greedy_sampler if params.temperature == 0 else Sampler(params)
    return sampler, processors


class Sampler:
    """top_p → min_p → top_k (mlx-lm's order), then a categorical draw at the temperature.

    With a seed, each draw uses the next split of the request's own key: the same seed gives the
    same tokens alone or in any batch (mx.random.seed would be global to every batched request).
    """

    def __init__(self, params: SamplingParams) -> None:
        import mlx.core as mx

        self.params = params
        self._key = mx.random.key(params.seed) if params.seed is not None else None

    def __call__(self, logprobs: Any) -> Any:
        import mlx.core as mx
        from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

        p = self.params
        if 0 < p.top_p < 1.0:
            logprobs = apply_top_p(logprobs, p.top_p)
        if p.min_p:
            logprobs = apply_min_p(logprobs, p.min_p)
        if 0 < p.top_k < logprobs.shape[-1]:  # a top_k past the vocabulary keeps every token
            logprobs = apply_top_k(logprobs, p.top_k)
        scaled = logprobs * (1.0 / p.temperature)
        if self._key is None:
            return mx.random.categorical(scaled)
        self._key, key = mx.random.split(self._key)
        return mx.random.categorical(scaled, key=key)


class GuardedProcessors:
    """A request's processors as one; an exception is kept for the scheduler instead of raised.

    mlx-lm calls processors inside the batched step, where raising would fail every request.
    """

    def __init__(self, processors: list[Any]) -> None:
        self.processors = processors
        self.error: Exception | None = None

    def __call__(self, tokens: Any, logits: Any) -> Any:
        if self.error is not None:
            return logits
        try:
            for processor in self.processors:
                logits = processor(tokens, logits)
        except Exception as exc:
            self.error = exc
        return logits
