"""The MLX engine maps every OpenAI sampling field onto mlx-lm's samplers and logits processors."""

from __future__ import annotations

import mlx.core as mx

from radis_mlx.engines.mlx.llm import _sampling
from radis_mlx.generation.types import SamplingParams


def apply(processors, tokens, logits):
    for processor in processors:
        logits = processor(mx.array(tokens), logits)
    return logits


def test_defaults_add_no_processors_and_greedy_is_argmax():
    sampler, processors = _sampling(SamplingParams(temperature=0))
    assert processors == []
    assert sampler(mx.array([[0.1, 3.0, 0.2]])).item() == 1


def test_presence_and_frequency_penalties_subtract_from_seen_tokens():
    _, presence = _sampling(SamplingParams(presence_penalty=1.5))
    assert apply(presence, [2, 2, 3], mx.zeros((1, 4))).tolist() == [[0, 0, -1.5, -1.5]]
    _, frequency = _sampling(SamplingParams(frequency_penalty=1.0))
    assert apply(frequency, [2, 2, 3], mx.zeros((1, 4))).tolist() == [[0, 0, -2.0, -1.0]]


def test_repetition_penalty_and_logit_bias():
    logits = mx.array([[2.0, 2.0, -2.0, 1.0]])
    _, processors = _sampling(SamplingParams(repetition_penalty=2.0, logit_bias={3: 5.0}))
    assert apply(processors, [0, 2], logits).tolist() == [[1.0, 2.0, -4.0, 6.0]]


def test_top_k_restricts_sampling():
    sampler, _ = _sampling(SamplingParams(temperature=1.0, top_k=1))
    logprobs = mx.log(mx.array([[0.3, 0.4, 0.3]]))
    assert {sampler(logprobs).item() for _ in range(20)} == {1}
