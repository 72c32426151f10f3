"""The MLX vision engine on the tiny real SmolVLM (tests/support/tiny_vlm.py): its batched path (images
prefilled from mlx-vlm's embeddings, the rest in mlx-lm's batch) gives mlx-vlm's own greedy tokens, alone
and batched with other requests, and its prompt cache never answers one image with another's KV."""

from __future__ import annotations

import asyncio
import io
import sys

import pytest
from PIL import Image

from radis_mlx.engines.mlx.vlm import MlxVlmEngine
from radis_mlx.errors import ModelLoadError, UnsupportedModelError
from radis_mlx.generation.types import (
    ChatMessage,
    GenerationRequest,
    ImageInput,
    SamplingParams,
    message_with_parts,
)
from radis_mlx.schemas.images import decode_into
from tests.support.images import BLUE, RED
from tests.support.tiny_vlm import IMAGE_TOKENS, TEMPLATE, build

QUESTION = "What is in this image?"
MAX = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build(tmp_path_factory.mktemp("tiny-vlm") / "tiny-smolvlm")


@pytest.fixture
async def engine(folder, tmp_path):
    engine = MlxVlmEngine("tiny", folder, context_length=None, cache_dir=tmp_path, prompt_cache_bytes=2**26)
    engine.chat_template = TEMPLATE
    await engine.start()
    yield engine
    await engine.close()


def image(data: bytes) -> ImageInput:
    item = ImageInput("data:", "messages[0].content[0].image_url")
    decode_into(item, data, None, pixel_room=10**8, strict_type=False)
    return item


def request(data: bytes | None) -> GenerationRequest:
    message = message_with_parts("user", [image(data), QUESTION]) if data else ChatMessage("user", QUESTION)
    return GenerationRequest(
        messages=[message], max_tokens=MAX, sampling=SamplingParams(temperature=0), logprobs=0
    )


async def run(engine: MlxVlmEngine, data: bytes | None) -> tuple[list[bytes], int, int, int]:
    """(the generated tokens' bytes, prompt tokens, cached tokens, image tokens)."""
    tokens: list[bytes] = []
    async for chunk in engine.generate(request(data)):
        tokens += [entry.bytes for entry in chunk.logprobs or []]
        last = chunk
    return tokens, last.prompt_tokens, last.cached_tokens, last.image_tokens


def reference(folder, engine: MlxVlmEngine, data: bytes) -> list[bytes]:
    """mlx-vlm's own greedy generation (its prompt, its processor, its generate loop), as token bytes."""
    from mlx_vlm import generate, load
    from mlx_vlm.prompt_utils import apply_chat_template

    model, processor = load(str(folder))
    prompt = apply_chat_template(processor, model.config, QUESTION, num_images=1)
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    result = generate(model, processor, prompt, image=[picture], max_tokens=MAX, temperature=0.0)
    decode = engine._guidance.get().decode_bytes  # the engine's own token → bytes map
    eos = set(engine._tokenizer.eos_token_ids)
    return [decode([t]) for t in result.token_ids if t not in eos]


@pytest.mark.anyio
async def test_images_give_mlx_vlms_own_greedy_tokens_and_count_as_prompt_tokens(engine, folder):
    red, prompt, _, images = await run(engine, RED)
    assert red == reference(folder, engine, RED)[: len(red)] and red
    assert images == IMAGE_TOKENS
    _, text_only, _, none = await run(engine, None)
    assert none == 0 and prompt >= text_only + IMAGE_TOKENS


@pytest.mark.anyio
async def test_batched_with_text_and_other_images_each_request_gets_its_own_answer(engine):
    alone = [(await run(engine, data))[0] for data in (RED, BLUE, None)]
    together = await asyncio.gather(*(run(engine, data) for data in (BLUE, None, RED)))
    assert [t[0] for t in together] == [alone[1], alone[2], alone[0]]
    assert alone[0] != alone[1]


@pytest.mark.anyio
async def test_the_prompt_cache_reuses_an_image_only_for_that_image(engine):
    first, prompt, cached, _ = await run(engine, RED)
    assert cached == 0
    other, _, cached_other, _ = await run(engine, BLUE)  # same text, another image
    assert other != first and cached_other < prompt - IMAGE_TOKENS
    again, _, cached_again, _ = await run(engine, RED)
    assert again == first and cached_again == prompt - 1
    stats = engine.stats()
    assert stats["prompt_cache_hits"] >= 2 and stats["failed"] == 0


@pytest.mark.anyio
async def test_without_the_extra_a_vision_model_says_what_to_install(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx_vlm.utils", None)  # as if mlx-vlm were not installed
    engine = MlxVlmEngine("tiny", folder, context_length=None, cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match=r"pip install 'radis-mlx\[vision\]'"):
        await engine.start()


class _Cache:
    """Stands for an mlx-vlm cache class by its name (the check reads names only)."""


def _language(*caches: str, rope_deltas: bool = False) -> object:
    class Language:
        def make_cache(self):
            return [type(name, (_Cache,), {})() for name in caches]

    language = Language()
    if rope_deltas:
        language._rope_deltas = None  # type: ignore[attr-defined]
    return language


@pytest.mark.parametrize(
    ("model_type", "language", "served"),
    [
        ("smolvlm", _language("KVCache", "KVCache"), True),
        ("qwen2_5_vl", _language("KVCache"), False),  # M-RoPE positions from the image grid
        ("gemma3", _language("KVCache"), False),  # bidirectional attention over image tokens
        ("mistral3", _language("KVCache", "RotatingKVCache"), False),  # a sliding window
        ("new_vl", _language("KVCache", rope_deltas=True), False),  # stateful positions, whatever its name
    ],
)
def test_only_language_models_that_need_nothing_but_embeddings_are_served(
    folder, tmp_path, model_type, language, served
):
    engine = MlxVlmEngine("tiny", folder, context_length=None, cache_dir=tmp_path)
    engine._vlm = type("Vlm", (), {"language_model": language})()
    if served:
        engine._check_batchable(model_type)
    else:
        with pytest.raises(UnsupportedModelError, match=f"'{model_type}'"):
            engine._check_batchable(model_type)
