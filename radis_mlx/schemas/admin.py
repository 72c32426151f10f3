"""The management API (/api/v0/...): LM Studio's REST shapes where they exist, ours besides."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

from radis_mlx.schemas.common import TtlSeconds


class LoadRequest(Struct, kw_only=True):
    model: str
    # Idle seconds before the model unloads again (as LM Studio's `ttl`); unset: the entry's or [pool]'s.
    ttl: TtlSeconds | None = None


class UnloadRequest(Struct, kw_only=True):
    model: str


class PullRequest(Struct, kw_only=True):
    # A model id (configured or discovered) or a source: "org/repo", "hf:org/repo/file.gguf", "pypi:...".
    model: str


class ModelInfo(Struct, kw_only=True):
    """One model as LM Studio's GET /api/v0/models lists it, plus our fields after `max_context_length`."""

    id: str
    object: Literal["model"] = "model"
    type: Literal["llm", "vlm", "embeddings", "rerank"]  # "vlm": reads images too (LM Studio's word)
    publisher: str
    arch: str | None
    compatibility_type: str | None  # "gguf" or "mlx" (the files' format)
    quantization: str | None
    state: str  # "not-loaded", "loading", "loaded" or "unloading"
    max_context_length: int | None
    engine: str
    origin: str  # "config", "hf-cache", "model-dir", "cache", "lmstudio" or "ollama"
    size_bytes: int | None
    pinned: bool
    aliases: list[str]
    input_modalities: list[str]  # ["text"], or ["text", "image"] for a vision model


class ModelInfoList(Struct):
    data: list[ModelInfo]
    object: Literal["list"] = "list"


class LoadedModel(Struct, kw_only=True):
    """A loaded model: what it holds, when it was last used, when it unloads."""

    id: str
    engine: str
    state: str
    size_bytes: int  # held in the budget: measured weights (else the estimate) + the KV cache estimate
    measured_bytes: int  # what the engine reported after loading (0: nothing reported)
    estimated_bytes: int  # weights + KV cache, estimated from the files before loading
    active_requests: int
    queued_requests: int  # waiting for a place in service (max_concurrent; see max_queue)
    last_used: int  # unix time
    idle_seconds: float
    ttl: float | None  # idle seconds before unloading; null: never (pinned, or no TTL)
    ttl_left: float | None
    pinned: bool
    context_length: int
    details: dict[str, str]
    # The engine's scheduler: requests waiting/active/finished/cancelled, prompt-cache hits and bytes.
    stats: dict[str, int] = msgspec.field(default_factory=dict)


class LoadedModelList(Struct, kw_only=True):
    data: list[LoadedModel]
    object: Literal["list"] = "list"
    budget_bytes: int
    used_bytes: int


class UnloadResponse(Struct):
    id: str
    unloaded: bool  # false: it was not loaded


class DeletedModel(Struct):
    """As OpenAI's DELETE /v1/models/{model}."""

    id: str
    deleted: bool
    object: Literal["model"] = "model"


class PullEvent(Struct, kw_only=True, omit_defaults=True):
    """One SSE event of a pull (as Ollama's /api/pull streams them): status, then bytes done/total."""

    status: Literal["pulling", "downloading", "success"]
    model: str
    completed: int | None = None
    total: int | None = None
    path: str | None = None


class ServerMetrics(Struct, kw_only=True):
    """Counters since the server started (GET /api/v0/metrics); requests: POST /v1/..., Ollama's inference."""

    uptime_seconds: float
    requests_served: int
    requests_failed: int  # a 4xx/5xx answer, or a stream that ended with an error event
    tokens_generated: int
    models_loaded: int
    models_available: int
    memory_used_bytes: int
    memory_budget_bytes: int


class ActivityBucket(Struct, kw_only=True):
    """One interval of GET /api/v0/activity: requests that ended in it, tokens generated during it."""

    start: float  # unix time
    requests: int
    failed: int
    tokens: float  # a generation's tokens are spread over the time it took, so fractions occur
    tokens_per_second: float


class RequestRecord(Struct, kw_only=True):
    """One finished inference request, as the dashboard's request log shows it."""

    time: float  # unix time it arrived
    method: str
    route: str
    model: str | None  # as the body named it (None: no body decoded)
    status: int  # the HTTP status; a stream that failed after its start keeps its 200 but is `failed`
    failed: bool
    duration_seconds: float
    # Summed over the request's generations (n choices, several prompts); None: nothing generated.
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_seconds: float | None = None  # from arrival to the first generated text (queue and load included)
    tokens_per_second: float | None = None  # decoding after the first token


class ActivityReport(Struct, kw_only=True):
    """GET /api/v0/activity: the last minutes, interval by interval, and the last requests (newest first)."""

    interval_seconds: float
    buckets: list[ActivityBucket]
    requests: list[RequestRecord]
