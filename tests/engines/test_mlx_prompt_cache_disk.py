"""The MLX prompt cache's disk tier on the real starter model: it survives an unload and a restart, keeps
the system prompt's checkpoint for other conversations, skips and removes bad files, and writes nothing off.

Short prompts and few tokens: MLX on this machine's CPU prefills and decodes about ten tokens a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from radis_mlx.config import Config
from radis_mlx.engines.mlx.llm import MlxLlmEngine
from radis_mlx.generation.types import ChatMessage, GenerationRequest, SamplingParams

pytestmark = pytest.mark.anyio

SYSTEM = (
    "You are a terse assistant for a weather service. Answer in one short sentence, name the city, "
    "and never invent numbers you were not given."
)


async def engine_on(path: Path, kv_dir: Path, disk_bytes: int = 2**30) -> MlxLlmEngine:
    engine = MlxLlmEngine(
        "smollm2",
        path,
        context_length=512,
        cache_dir=Config().cache_dir,
        prompt_cache_bytes=64 * 2**20,
        prompt_cache_disk_bytes=disk_bytes,
        kv_dir=kv_dir,
    )
    await engine.start()
    return engine


async def chat(engine: MlxLlmEngine, question: str) -> tuple[int, int]:
    """(prompt tokens, of which cached) of a 2-token greedy reply."""
    request = GenerationRequest(
        messages=[ChatMessage("system", SYSTEM), ChatMessage("user", question)],
        max_tokens=2,
        sampling=SamplingParams(temperature=0.0),
    )
    async for chunk in engine.generate(request):
        if chunk.finish_reason is not None:
            return chunk.prompt_tokens, chunk.cached_tokens
    raise AssertionError("no finish")


def files(kv_dir: Path) -> list[Path]:
    return sorted(kv_dir.glob("*/*.safetensors"))


async def test_the_disk_tier_survives_a_restart_and_serves_the_system_prompt_to_other_chats(
    smollm_gguf, tmp_path
):
    first = await engine_on(smollm_gguf, tmp_path)
    try:
        prompt, cached = await chat(first, "Weather in Paris?")
        assert cached == 0
        assert len(files(tmp_path)) == 1  # the system checkpoint, written when it was made
    finally:
        await first.close()  # unloading writes the RAM tier back
    assert len(files(tmp_path)) == 2
    second = await engine_on(smollm_gguf, tmp_path)  # a fresh engine: nothing in RAM
    try:
        # A branch (the last message edited): the head it shares with what is on disk, system prompt included.
        other, cached = await chat(second, "Weather in Oslo?")
        assert system_tokens(second) <= cached < other
        # The same conversation again: all of it but the last token, from disk.
        second._scheduler.prompt_cache._lru = type(second._scheduler.prompt_cache._lru)(max_bytes=0)
        again, cached = await chat(second, "Weather in Paris?")
        assert again == prompt and cached == prompt - 1
        stats = second.stats()
        assert stats["prompt_cache_disk_hits"] == 2 and stats["prompt_cache_disk_entries"] >= 2
    finally:
        await second.close()


async def test_a_corrupt_file_is_skipped_and_removed_and_off_writes_nothing(smollm_gguf, tmp_path):
    first = await engine_on(smollm_gguf, tmp_path)
    try:
        await chat(first, "Weather in Rome?")
    finally:
        await first.close()
    for path in files(tmp_path):  # truncated, as by a crash mid-copy or a full disk
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    second = await engine_on(smollm_gguf, tmp_path)
    try:
        assert second.stats()["prompt_cache_disk_entries"] == 0  # found at startup: size ≠ sidecar's
        _, cached = await chat(second, "Weather in Rome?")
        assert cached == 0 and second.stats()["prompt_cache_disk_corrupt"] == 2
    finally:
        await second.close()
    off = tmp_path / "off"
    third = await engine_on(smollm_gguf, off, disk_bytes=0)
    try:
        await chat(third, "Weather in Rome?")
    finally:
        await third.close()
    assert not off.exists() or files(off) == []


def system_tokens(engine: MlxLlmEngine) -> int:
    """The length of the system checkpoint on disk."""
    index = engine._scheduler.prompt_cache.disk.index
    return min(entry.tokens for entry in index._entries.values() if entry.kind == "system")
