"""POST /api/embed (L2-normalised vectors, as Ollama's) and the legacy POST /api/embeddings (raw vectors).

An empty input only loads the model, as on Ollama; `keep_alive` sets its idle TTL.
"""

from __future__ import annotations

from time import perf_counter_ns

from litestar import Request, post
from litestar.di import NamedDependency

from radis_mlx.api.body import decode_body
from radis_mlx.api.ollama.run import lease, load_or_unload, resolve
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import EmbeddingResult
from radis_mlx.pool import ModelPool, PoolSlot
from radis_mlx.schemas.errors import OllamaErrorResponse
from radis_mlx.schemas.ollama.models import EmbeddingsRequest, EmbeddingsResponse, EmbedRequest, EmbedResponse

TAGS = ["Ollama"]


@post(
    "/api/embed",
    status_code=200,
    summary="Embed texts, L2-normalised (Ollama)",
    tags=TAGS,
    opt={"request": EmbedRequest, "error": OllamaErrorResponse},
)
async def ollama_embed(request: Request, pool: NamedDependency[ModelPool]) -> EmbedResponse:
    body = decode_body(await request.body(), EmbedRequest)
    slot = _embedding(pool, body.model_name)
    keep_alive = body.keep_alive_seconds()
    inputs = body.inputs(slot.entry.max_inputs)
    if not inputs:
        await load_or_unload(pool, slot, keep_alive)
        return EmbedResponse(model=body.model_name, embeddings=[])
    start = perf_counter_ns()
    result, loaded = await _embed(pool, slot, keep_alive, inputs)
    return EmbedResponse(
        model=body.model_name,
        embeddings=body.vectors(result),
        total_duration=perf_counter_ns() - start,
        load_duration=loaded - start,
        prompt_eval_count=result.prompt_tokens,
    )


@post(
    "/api/embeddings",
    status_code=200,
    summary="Embed one text, not normalised (Ollama's older route)",
    tags=TAGS,
    opt={"request": EmbeddingsRequest, "error": OllamaErrorResponse},
)
async def ollama_embeddings(request: Request, pool: NamedDependency[ModelPool]) -> EmbeddingsResponse:
    body = decode_body(await request.body(), EmbeddingsRequest)
    slot = _embedding(pool, body.model_name)
    keep_alive = body.keep_alive_seconds()
    if not body.prompt:
        await load_or_unload(pool, slot, keep_alive)
        return EmbeddingsResponse([])
    result, _ = await _embed(pool, slot, keep_alive, [body.prompt])
    return EmbeddingsResponse([float(x) for x in result.vectors[0]])


def _embedding(pool: ModelPool, name: str) -> PoolSlot:
    slot = resolve(pool, name)
    # Checked before loading: a chat model is not loaded just to refuse the request.
    if not slot.entry.serves_embeddings:
        raise InvalidRequestError(f'"{name}" does not support embeddings', param="model")
    return slot


async def _embed(
    pool: ModelPool, slot: PoolSlot, keep_alive: float | None, inputs: list[str]
) -> tuple[EmbeddingResult, int]:
    """The vectors, and when the model was held (perf_counter ns) for load_duration."""
    async with lease(pool, slot, keep_alive) as engine:
        loaded = perf_counter_ns()
        return await engine.embed(inputs), loaded
