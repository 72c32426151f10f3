"""create_app(config, pool): the Litestar app, its routes, lifespan and the one error handler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from radis_mlx.api import admin, dashboard, metrics, openapi, rerank, tokens
from radis_mlx.api.anthropic import messages
from radis_mlx.api.disconnect import DisconnectMiddleware
from radis_mlx.api.errors import encode, family_of
from radis_mlx.api.guard import LOOPBACK_NAMES, GuardMiddleware, is_loopback
from radis_mlx.api.ollama import chat as ollama_chat
from radis_mlx.api.ollama import embed as ollama_embed
from radis_mlx.api.ollama import models as ollama_models
from radis_mlx.api.openai import chat, completions, embeddings, models, responses
from radis_mlx.api.signing import ReasoningSeal
from radis_mlx.config import Config
from radis_mlx.errors import InvalidRequestError, RadisError
from radis_mlx.pool import ModelPool

log = logging.getLogger(__name__)

_HTTP_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
}


def create_app(config: Config, pool: ModelPool | None = None) -> Litestar:
    """Build the server for a config; the pool is injectable for tests with a fake engine."""
    pool = pool or ModelPool(config)
    counters = metrics.Metrics()
    stored_responses = responses.ResponseStore()
    seal = ReasoningSeal.in_folder(config.cache_dir)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await pool.start()  # TTL expiry, preloads
        try:
            yield
        finally:
            await pool.close()

    app = Litestar(
        route_handlers=[
            models.list_models,
            models.retrieve_model,
            models.health,
            chat.create_chat_completion,
            completions.create_completion,
            responses.create_response,
            responses.response_by_id,
            messages.create_message,
            messages.count_message_tokens,
            embeddings.create_embeddings,
            rerank.rerank,
            tokens.tokenize,
            tokens.detokenize,
            admin.list_models,
            admin.list_loaded,
            admin.model_by_id,
            admin.load_model,
            admin.unload_model,
            admin.pull_model,
            metrics.server_metrics,
            metrics.server_activity,
            ollama_chat.ollama_chat,
            ollama_chat.ollama_generate,
            ollama_embed.ollama_embed,
            ollama_embed.ollama_embeddings,
            ollama_models.ollama_tags,
            ollama_models.ollama_show,
            ollama_models.ollama_ps,
            ollama_models.ollama_version,
            ollama_models.ollama_pull,
            ollama_models.ollama_delete,
            ollama_models.heartbeat,
            dashboard.index,
            dashboard.static_files(),
        ],
        middleware=[
            DefineMiddleware(metrics.MetricsMiddleware, metrics=counters),
            _guard(config),
            DisconnectMiddleware,  # a client gone before its response starts cancels its request
        ],
        cors_config=CORSConfig(allow_origins=config.server.cors_origins)
        if config.server.cors_origins
        else None,
        request_max_body_size=config.server.max_body_bytes,
        dependencies={
            "pool": Provide(lambda: pool, use_cache=True, sync_to_thread=False),
            "metrics": Provide(lambda: counters, use_cache=True, sync_to_thread=False),
            "responses": Provide(lambda: stored_responses, use_cache=True, sync_to_thread=False),
            "seal": Provide(lambda: seal, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={Exception: handle_error},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="radis-mlx", version="0.1.0", path="/openapi"),
        debug=False,
    )
    openapi.document(app)
    return app


def _guard(config: Config) -> DefineMiddleware:
    settings = config.server
    # Only a loopback server can be reached through DNS rebinding; on other addresses the names vary.
    hosts = [*LOOPBACK_NAMES, *settings.allowed_hosts] if is_loopback(settings.host) else None
    return DefineMiddleware(GuardMiddleware, api_keys=settings.api_keys, allowed_hosts=hosts)


def handle_error(request: Request, exc: Exception) -> Response:
    """Render any exception in the route's error shape (OpenAI's, Anthropic's or Ollama's); no traceback."""
    headers: dict[str, str] = {}
    if isinstance(exc, RadisError):
        error, headers = exc, exc.headers  # Retry-After on 429/503 backpressure
    elif isinstance(exc, HTTPException):
        headers = dict(exc.headers or {})  # e.g. Allow on 405
        status = exc.status_code
        error = RadisError(str(exc.detail))
        error.status_code = status
        error.type = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    elif isinstance(exc, RecursionError):  # a body nested deeper than some step can walk: the body's fault
        log.warning("%s %s: request nested too deeply (%s)", request.method, request.url.path, exc)
        error = InvalidRequestError("The request is nested too deeply.")
    else:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = RadisError(f"internal server error: {type(exc).__name__}: {exc}")
    if error.status_code >= 500:
        log.error("%s %s → %d %s", request.method, request.url.path, error.status_code, error.message)
    body = encode(error, family_of(request.url.path))
    return Response(
        content=body, status_code=error.status_code, headers=headers, media_type="application/json"
    )
