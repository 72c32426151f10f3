"""POST /v1/rerank (and /rerank, /v1/reranking, as llama-server serves it): decode → pool → engine.rerank."""

from __future__ import annotations

from litestar import Request, post
from litestar.di import NamedDependency

from radis_mlx.api.body import decode_body, new_id
from radis_mlx.errors import InvalidRequestError
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.rerank import RerankRequest, RerankResponse


@post(
    ["/v1/rerank", "/rerank", "/v1/reranking"],
    status_code=200,
    summary="Rerank documents by relevance to a query",
    tags=["Rerank"],
    opt={"request": RerankRequest},
)
async def rerank(request: Request, pool: NamedDependency[ModelPool]) -> RerankResponse:
    body = decode_body(await request.body(), RerankRequest)
    entry = pool.get(body.model).entry
    # Checked before loading: an embedder's vectors are no scores, and a chat model is not loaded to refuse.
    if entry.kind != "rerank":
        raise InvalidRequestError(
            f"the model '{body.model}' is not a reranker (kind = \"rerank\")",
            param="model",
            code="model_not_reranker",
        )
    query, documents = body.to_inputs(entry.max_inputs)
    async with pool.acquire(body.model, ttl=body.ttl) as engine:
        result = await engine.rerank(query, documents)
    return body.to_response(result, documents, new_id("rerank"))
