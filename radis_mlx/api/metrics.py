"""GET /api/v0/metrics: uptime, requests served and failed, tokens generated, memory; GET /api/v0/activity:
the last minutes interval by interval and the last requests (the dashboard polls both).

Counting is one ASGI middleware over the inference routes (POST /v1/..., and Ollama's /api/chat,
/api/generate, /api/embed and /api/embeddings): it reads the response status,
and a stream that fails after its start says so through `count_failure` (api/errors.stream_failure).
Tokens are added by `count_generated_tokens`, which the runner calls on a generation's last chunk, and
the model by `note_model` when a body is decoded. A context variable carries the request's counters
there, so nothing global is shared between apps. Every record is bounded: the history is a fixed ring,
the request log a deque of RECENT_REQUESTS, a route or model name is cut to NAME_LIMIT characters.
"""

from __future__ import annotations

import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import cast

from litestar import get
from litestar.di import NamedDependency
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from radis_mlx.api.activity import History, per_second
from radis_mlx.generation.types import GenerationChunk
from radis_mlx.pool import ModelPool, ModelState
from radis_mlx.schemas.admin import ActivityReport, RequestRecord, ServerMetrics

RECENT_REQUESTS = 100
NAME_LIMIT = 200


@dataclass
class Metrics:
    """Counters since the server started, the last minutes' history and the last requests."""

    started: float = field(default_factory=time.time)
    requests_served: int = 0
    requests_failed: int = 0
    tokens_generated: int = 0
    history: History = field(default_factory=History)
    recent: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))


@dataclass
class _Request:
    """One counted request: the app's counters, whether its stream failed, what it generated."""

    metrics: Metrics
    arrived: float = field(default_factory=time.monotonic)
    failed: bool = False
    model: str | None = None
    generations: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    first_token: float = 0.0  # monotonic: the earliest first chunk of its generations
    last_token: float = 0.0  # monotonic: when its last generation finished

    def record(self, scope: HTTPScope, status: int) -> RequestRecord:
        """This request as the request log keeps it."""
        now = time.monotonic()
        generated = self.generations > 0
        decoding = self.last_token - self.first_token
        return RequestRecord(
            time=round(time.time() - (now - self.arrived), 3),
            method=scope["method"],
            route=scope["path"][:NAME_LIMIT],
            model=self.model,
            status=status,
            failed=self.failed,
            duration_seconds=round(now - self.arrived, 3),
            prompt_tokens=self.prompt_tokens if generated else None,
            cached_tokens=self.cached_tokens if generated else None,
            completion_tokens=self.completion_tokens if generated else None,
            ttft_seconds=round(self.first_token - self.arrived, 3) if generated else None,
            tokens_per_second=per_second(self.completion_tokens - self.generations, decoding),
        )


_current: ContextVar[_Request | None] = ContextVar("radis_mlx_metrics", default=None)


def count_generated_tokens(chunk: GenerationChunk, first_token: float) -> None:
    """Add a finished generation (its last chunk; its first chunk's monotonic time) to this request."""
    request = _current.get()
    if request is None:
        return
    now = time.monotonic()
    request.metrics.tokens_generated += chunk.completion_tokens
    wall = time.time()
    request.metrics.history.add_tokens(chunk.completion_tokens, wall - (now - first_token), wall)
    request.generations += 1
    request.prompt_tokens += chunk.prompt_tokens
    request.cached_tokens += chunk.cached_tokens
    request.completion_tokens += chunk.completion_tokens
    request.first_token = min(request.first_token or first_token, first_token)
    request.last_token = now


def note_model(model: object) -> None:
    """The model a decoded body names, for this request's log entry."""
    request = _current.get()
    if request is not None and isinstance(model, str):
        request.model = model[:NAME_LIMIT]


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
        status = 500  # unless a response starts

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                request.failed = request.failed or status >= 400
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
            self.metrics.history.count_request(request.failed)
            self.metrics.recent.append(request.record(cast(HTTPScope, scope), status))


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


@get(
    "/api/v0/activity",
    summary="Requests and tokens/s over the last minutes, and the last requests, for the dashboard",
    tags=["Management"],
)
async def server_activity(metrics: NamedDependency[Metrics]) -> ActivityReport:
    return ActivityReport(
        interval_seconds=metrics.history.interval,
        buckets=metrics.history.buckets(),
        requests=list(reversed(metrics.recent)),
    )
