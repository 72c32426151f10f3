"""GET /api/v0/metrics: uptime, requests served and failed, tokens generated, memory (the dashboard polls it).

Counting is one ASGI middleware over the inference routes (POST /v1/..., and Ollama's /api/chat,
/api/generate, /api/embed and /api/embeddings): it reads the response status,
and a stream that fails after its start says so through `count_failure` (api/errors.stream_failure).
Tokens are added by `count_generated_tokens`, which the runner calls on a generation's last chunk. A
context variable carries the request's counters there, so nothing global is shared between apps.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import cast

from litestar import get
from litestar.di import NamedDependency
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from radis_mlx.pool import ModelPool, ModelState
from radis_mlx.schemas.admin import ServerMetrics


@dataclass
class Metrics:
    """Counters since the server started."""

    started: float = field(default_factory=time.time)
    requests_served: int = 0
    requests_failed: int = 0
    tokens_generated: int = 0


@dataclass
class _Request:
    """One counted request: the app's counters, and whether its stream failed after the start."""

    metrics: Metrics
    failed: bool = False


_current: ContextVar[_Request | None] = ContextVar("radis_mlx_metrics", default=None)


def count_generated_tokens(completion_tokens: int) -> None:
    """Add a finished generation's tokens to the counters of the app serving this request."""
    request = _current.get()
    if request is not None:
        request.metrics.tokens_generated += completion_tokens


def count_failure() -> None:
    """Count this request as failed although its response started well (a stream's error event)."""
    request = _current.get()
    if request is not None:
        request.failed = True


OLLAMA_INFERENCE = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})


def is_inference(scope: HTTPScope) -> bool:
    """A request that runs a model: POST /v1/... or one of Ollama's generation and embedding routes."""
    path = scope["path"]
    return scope["method"] == "POST" and (path.startswith("/v1/") or path in OLLAMA_INFERENCE)


class MetricsMiddleware:
    """Counts inference requests by outcome: a 4xx/5xx status or a failed stream counts as failed."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_inference(cast(HTTPScope, scope)):
            await self.app(scope, receive, send)
            return
        request = _Request(self.metrics)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                request.failed = True
            await send(message)

        token = _current.set(request)
        try:
            await self.app(scope, receive, watch)
        except BaseException:
            request.failed = True
            raise
        finally:
            _current.reset(token)
            if request.failed:
                self.metrics.requests_failed += 1
            else:
                self.metrics.requests_served += 1


@get("/api/v0/metrics", summary="Server counters and memory, for the dashboard", tags=["Management"])
async def server_metrics(
    pool: NamedDependency[ModelPool], metrics: NamedDependency[Metrics]
) -> ServerMetrics:
    loaded = [s for s in pool.slots() if s.state is ModelState.LOADED]
    return ServerMetrics(
        uptime_seconds=round(time.time() - metrics.started, 3),
        requests_served=metrics.requests_served,
        requests_failed=metrics.requests_failed,
        tokens_generated=metrics.tokens_generated,
        models_loaded=len(loaded),
        models_available=len(pool.slots()),
        memory_used_bytes=pool.used_bytes(),
        memory_budget_bytes=pool.budget_bytes,
    )
