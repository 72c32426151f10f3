"""POST /v1/embeddings: decode → pool.acquire → engine.embed → encode."""

from __future__ import annotations

from litestar import Request, post
from litestar.di import NamedDependency

from radis_mlx.api.body import decode_body
from radis_mlx.errors import InvalidRequestError
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.embeddings import CreateEmbeddingResponse, EmbeddingRequest


@post(
    "/v1/embeddings",
    status_code=200,
    summary="Create embeddings",
    tags=["OpenAI"],
    opt={"request": EmbeddingRequest},
)
async def create_embeddings(request: Request, pool: NamedDependency[ModelPool]) -> CreateEmbeddingResponse:
    body = decode_body(await request.body(), EmbeddingRequest)
    entry = pool.get(body.model).entry
    # Checked before loading: a chat model is not loaded just to refuse the request.
    if not entry.serves_embeddings:
        raise InvalidRequestError(
            f"the model '{body.model}' does not produce embeddings", param="model", code="model_not_embedding"
        )
    inputs = body.to_inputs(entry.max_inputs)
    async with pool.acquire(body.model, ttl=body.ttl) as engine:
        result = await engine.embed(inputs)
    return body.to_response(result, matryoshka=entry.matryoshka)
