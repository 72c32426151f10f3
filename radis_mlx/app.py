"""create_app(config, pool): the Litestar app, its routes, lifespan and the one error handler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from radis_mlx.api import chat, completions, models
from radis_mlx.config import Config
from radis_mlx.errors import RadisError
from radis_mlx.pool import ModelPool

log = logging.getLogger(__name__)

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def create_app(config: Config, pool: ModelPool | None = None) -> Litestar:
    """Build the server for a config; the pool is injectable for tests with a fake engine."""
    pool = pool or ModelPool(config)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await pool.close()

    return Litestar(
        route_handlers=[
            models.list_models,
            models.retrieve_model,
            models.health,
            chat.create_chat_completion,
            completions.create_completion,
        ],
        dependencies={"pool": Provide(lambda: pool, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: handle_error},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="radis-mlx", version="0.1.0", path="/openapi"),
        debug=False,
    )


def handle_error(request: Request, exc: Exception) -> Response:
    """Render any exception as an OpenAI error body; never a traceback."""
    if isinstance(exc, RadisError):
        error = exc
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        error = RadisError(str(exc.detail))
        error.status_code = status
        error.type = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    else:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = RadisError(f"internal server error: {type(exc).__name__}: {exc}")
    if error.status_code >= 500:
        log.error("%s %s → %d %s", request.method, request.url.path, error.status_code, error.message)
    return Response(content=error.to_body(), status_code=error.status_code)
