"""POST /tokenize and /detokenize (also under /v1/): a served model's own tokenizer, as generation uses it."""

from __future__ import annotations

from litestar import Request, post
from litestar.di import NamedDependency

from radis_mlx.api.body import decode_body
from radis_mlx.errors import InvalidRequestError
from radis_mlx.pool import ModelPool
from radis_mlx.schemas.tokens import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse


@post(
    ["/tokenize", "/v1/tokenize"],
    status_code=200,
    summary="Token ids of a text",
    tags=["Tokens"],
    opt={"request": TokenizeRequest},
)
async def tokenize(request: Request, pool: NamedDependency[ModelPool]) -> TokenizeResponse:
    body = decode_body(await request.body(), TokenizeRequest)
    text, add_special = body.to_text()
    pool.get(body.model)  # 404 before anything else
    async with pool.acquire(body.model) as engine:
        wanted = body.with_pieces or body.return_token_strs
        result = await engine.tokenize(text, add_special=add_special, with_pieces=wanted)
        return body.to_response(result, engine.info.context_length)


@post(
    ["/detokenize", "/v1/detokenize"],
    status_code=200,
    summary="Text of token ids",
    tags=["Tokens"],
    opt={"request": DetokenizeRequest},
)
async def detokenize(request: Request, pool: NamedDependency[ModelPool]) -> DetokenizeResponse:
    body = decode_body(await request.body(), DetokenizeRequest)
    pool.get(body.model)
    async with pool.acquire(body.model) as engine:
        try:
            text = await engine.detokenize(body.tokens)
        except InvalidRequestError as exc:
            if exc.param == "prompt":  # the engines name the completions field
                exc.param = "tokens"
            raise
    return DetokenizeResponse(text, text)
