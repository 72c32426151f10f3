"""The MLX engine's batch scheduler on the real starter model: requests that share a batch give what
they give alone, leave it when cancelled, reuse cached prompt prefixes, and fail alone.

Short prompts and few tokens: MLX on this machine's CPU decodes about ten tokens a second.
"""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from radis_mlx.config import Config
from radis_mlx.engines.mlx.batching import Job
from radis_mlx.engines.mlx.llm import MlxLlmEngine
from radis_mlx.engines.mlx.sampling import sampling
from radis_mlx.errors import EngineError
from radis_mlx.generation.types import GenerationRequest, SamplingParams

pytestmark = pytest.mark.anyio

PROMPTS = ["The capital of France is", "Once upon a time", "1, 2, 3, 4,", "def fibonacci(n):"]


async def start(path, cache_bytes: int) -> MlxLlmEngine:
    engine = MlxLlmEngine(
        "smollm2", path, context_length=512, cache_dir=Config().cache_dir, prompt_cache_bytes=cache_bytes
    )
    await engine.start()
    return engine


@pytest.fixture
async def engine(smollm_gguf):
    engine = await start(smollm_gguf, 64 * 2**20)
    yield engine
    await engine.close()


def request(prompt: str | list[int], max_tokens: int = 6, **sampling_fields) -> GenerationRequest:
    sampling_fields.setdefault("temperature", 0.0)
    return GenerationRequest(prompt=prompt, max_tokens=max_tokens, sampling=SamplingParams(**sampling_fields))


async def run(engine: MlxLlmEngine, generation: GenerationRequest) -> tuple[str, str, int, int]:
    """(text, finish_reason, completion_tokens, cached_tokens)."""
    pieces = []
    async for chunk in engine.generate(generation):
        pieces.append(chunk.text)
        if chunk.finish_reason is not None:
            return "".join(pieces), chunk.finish_reason, chunk.completion_tokens, chunk.cached_tokens
    raise AssertionError("the stream ended without a finish reason")


async def test_greedy_output_is_the_same_batched_and_one_at_a_time(smollm_gguf):
    # No prompt cache: the batched runs must not get their prefill from the sequential ones.
    engine = await start(smollm_gguf, 0)
    try:
        generations = [request(p, max_tokens=4 + i) for i, p in enumerate(PROMPTS)]
        alone = [await run(engine, g) for g in generations]
        together = await asyncio.gather(*(run(engine, g) for g in generations))
        assert [r[:3] for r in together] == [r[:3] for r in alone]
        assert all(r[1] == "length" and r[2] == 4 + i for i, r in enumerate(alone))
        stats = engine.stats()
        assert stats["finished"] == 2 * len(PROMPTS) and stats["active"] == stats["waiting"] == 0
        assert stats["prompt_cache_hits"] == 0 and stats["prompt_cache_bytes"] == 0
    finally:
        await engine.close()


async def test_a_seed_fixes_the_output_alone_and_beside_other_requests(engine):
    seeded = request(PROMPTS[1], max_tokens=8, temperature=1.0, seed=1234)
    alone = await run(engine, seeded)
    others = [request(PROMPTS[0], temperature=1.0), request(PROMPTS[2], temperature=1.0, seed=5)]
    together = await asyncio.gather(run(engine, seeded), *(run(engine, g) for g in others))
    assert together[0][0] == alone[0]
    seeds = {
        (await run(engine, request(PROMPTS[1], max_tokens=8, temperature=1.0, seed=s)))[0] for s in range(4)
    }
    assert len(seeds) > 1, "different seeds should not all sample the same text"


async def test_a_cancelled_stream_leaves_the_batch_at_once_and_the_others_finish(engine):
    long = engine.generate(request(PROMPTS[3], max_tokens=400))
    short = asyncio.ensure_future(run(engine, request(PROMPTS[0], max_tokens=12)))
    first = await anext(long)
    assert first.finish_reason is None
    await long.aclose()  # type: ignore[attr-defined]
    for _ in range(100):  # the worker drops it before its next step
        if engine.stats()["cancelled"] == 1:
            break
        await asyncio.sleep(0.05)
    assert engine.stats()["cancelled"] == 1
    assert not short.done(), "the cancelled request should leave within a step, long before the other ends"
    text, finish, tokens, _ = await short
    assert finish == "length" and tokens == 12 and text
    stats = engine.stats()
    assert stats["active"] == stats["waiting"] == 0 and stats["finished"] == 1


async def test_a_shared_prefix_comes_from_the_prompt_cache_with_the_same_greedy_output(smollm_gguf):
    engine = await start(smollm_gguf, 64 * 2**20)
    cold_engine = await start(smollm_gguf, 0)
    try:
        tokenizer = engine._tokenizer
        first = tokenizer.encode("Question: what is the capital of France? Answer:")
        text, _, _, cached = await run(engine, request(first, max_tokens=6))
        assert cached == 0
        # The next turn resends the first, its answer and more: everything up to the answer is cached.
        second = (
            first
            + tokenizer.encode(text, add_special_tokens=False)
            + tokenizer.encode(" Question: and of Italy? Answer:", add_special_tokens=False)
        )
        warm = await run(engine, request(second, max_tokens=6))
        cold = await run(cold_engine, request(second, max_tokens=6))
        assert warm[3] >= len(first) and cold[3] == 0
        assert warm[:3] == cold[:3]
        again = await run(engine, request(second, max_tokens=6))  # all cached but the last token
        assert again[3] == len(second) - 1 and again[:3] == cold[:3]
        stats = engine.stats()
        assert stats["prompt_cache_hits"] == 2 and 0 < stats["prompt_cache_bytes"] <= 64 * 2**20
    finally:
        await engine.close()
        await cold_engine.close()


async def test_a_failing_logits_processor_fails_its_request_only(engine):
    def broken(tokens, logits):
        raise EngineError("this processor always fails")

    sampler, processors = sampling(SamplingParams(temperature=0.0))
    job = Job(engine._tokenizer.encode(PROMPTS[0]), 6, sampler, [*processors, broken])
    healthy = asyncio.ensure_future(run(engine, request(PROMPTS[1], max_tokens=6)))
    assert engine._scheduler is not None
    failing = engine._thread.stream(partial(engine._scheduler.submit, job))
    with pytest.raises(EngineError, match="always fails"):
        async for _ in failing:
            pass
    assert (await healthy)[1:3] == ("length", 6)
    assert engine.stats()["failed"] == 1


async def test_embeddings_run_between_decode_steps(engine):
    generation = asyncio.ensure_future(run(engine, request(PROMPTS[2], max_tokens=10)))
    await asyncio.sleep(0.2)
    result = await engine.embed(["hello there"])
    assert len(result.vectors) == 1 and result.prompt_tokens > 0
    assert (await generation)[1:3] == ("length", 10)


def test_a_seeded_sampler_draws_from_its_own_key_not_the_global_random_state():
    import mlx.core as mx

    from radis_mlx.engines.mlx.sampling import Sampler

    uniform = mx.log(mx.ones((1, 50)) / 50)
    draws = []
    for global_seed in (0, 99):
        mx.random.seed(global_seed)  # another request seeding MLX must not move this one's draws
        sampler = Sampler(SamplingParams(temperature=1.0, seed=3))
        draws.append([sampler(uniform).item() for _ in range(12)])
    assert draws[0] == draws[1] and len(set(draws[0])) > 1
