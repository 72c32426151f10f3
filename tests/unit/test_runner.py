"""generation/runner.py: the request's one deadline."""

from __future__ import annotations

import asyncio

import pytest

from radis_mlx.errors import RequestTimeoutError
from radis_mlx.generation.runner import generate_until
from radis_mlx.generation.types import GenerationChunk, GenerationRequest

pytestmark = pytest.mark.anyio


class InstantEngine:
    """Every chunk ready at once (a queue already full), as when the writer is what is slow."""

    chat_template = None
    fim_template = None
    reasoning = None

    async def generate(self, request: GenerationRequest):
        for index in range(100):
            yield GenerationChunk(f"t{index} ", "length" if index == 99 else None, 1, index + 1)

    async def detokenize(self, tokens: list[int]) -> str:
        return ""


async def test_the_deadline_holds_against_a_slow_writer_even_when_chunks_are_ready():
    generate = generate_until(InstantEngine(), timeout=0.2)
    written = []
    with pytest.raises(RequestTimeoutError):
        async for chunk in generate(GenerationRequest(prompt="hi")):
            written.append(chunk.text)
            await asyncio.sleep(0.05)  # the client reads slowly; each write takes this long
    assert 2 <= len(written) < 10
