"""The management API under /api/v0 (LM Studio's REST paths): list, load, unload, pull, delete.

The mapping to LM Studio's and Ollama's endpoints is in docs/COMPATIBILITY.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from litestar import HttpMethod, Request, get, post, route
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from radis_mlx.api.body import decode_body
from radis_mlx.api.errors import sse_error
from radis_mlx.api.sse import SSE_DONE, SSE_HEADERS, sse
from radis_mlx.pool import ModelPool, PoolSlot
from radis_mlx.schemas.admin import (
    DeletedModel,
    LoadedModel,
    LoadedModelList,
    LoadRequest,
    ModelInfo,
    ModelInfoList,
    PullEvent,
    PullRequest,
    UnloadRequest,
    UnloadResponse,
)

TAGS = ["Management"]
# A download reports at most this often (seconds).
PROGRESS_INTERVAL = 0.25


def _kind(pool: ModelPool, slot: PoolSlot) -> Literal["llm", "vlm", "embeddings", "rerank"]:
    if slot.entry.kind == "embedding":
        return "embeddings"
    if slot.entry.kind == "rerank":
        return "rerank"
    return "vlm" if "image" in pool.catalog.input_modalities(slot) else "llm"


def model_info(pool: ModelPool, slot: PoolSlot) -> ModelInfo:
    """LM Studio's model object for a slot."""
    facts = pool.catalog.facts(slot)
    info = slot.engine.info if slot.engine is not None else None
    publisher, _, _ = slot.model_id.rpartition("/")
    return ModelInfo(
        id=slot.model_id,
        type=_kind(pool, slot),
        publisher=publisher or "local",
        arch=facts.arch if facts else None,
        compatibility_type=facts.format if facts else None,
        quantization=facts.quantization if facts else None,
        state=slot.state.value,
        max_context_length=info.context_length if info else slot.entry.context_length,
        engine=info.name if info else slot.entry.engine,
        origin=slot.origin,
        size_bytes=slot.measured_bytes or (facts.weights if facts else None),
        pinned=slot.pinned,
        aliases=list(slot.entry.aliases),
        input_modalities=pool.catalog.input_modalities(slot),
    )


def loaded_model(pool: ModelPool, slot: PoolSlot) -> LoadedModel:
    """A loaded slot with its memory and TTL."""
    idle = 0.0 if slot.active else max(0.0, pool.clock() - slot.last_used)
    info = slot.engine.info if slot.engine is not None else None
    return LoadedModel(
        id=slot.model_id,
        engine=info.name if info else slot.entry.engine,
        state=slot.state.value,
        size_bytes=slot.held_bytes,
        measured_bytes=slot.measured_bytes,
        estimated_bytes=slot.estimate.total if slot.estimate else 0,
        active_requests=slot.active,
        queued_requests=pool.admission(slot.model_id).stats.queued,
        last_used=int(time.time() - idle),
        idle_seconds=round(idle, 3),
        ttl=pool.effective_ttl(slot),
        ttl_left=_rounded(pool.ttl_left(slot)),
        pinned=slot.pinned,
        context_length=info.context_length if info else 0,
        details=dict(info.details) if info else {},
        stats=slot.engine.stats() if slot.engine is not None else {},
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@get("/api/v0/models", summary="List every servable model (LM Studio shape)", tags=TAGS)
async def list_models(pool: NamedDependency[ModelPool]) -> ModelInfoList:
    await pool.refresh_listing()
    return ModelInfoList(data=[model_info(pool, slot) for slot in pool.slots()])


@get("/api/v0/models/loaded", summary="List loaded models with memory and TTL left", tags=TAGS)
async def list_loaded(pool: NamedDependency[ModelPool]) -> LoadedModelList:
    loaded = [s for s in pool.slots() if s.engine is not None or s.held_bytes]
    return LoadedModelList(
        data=[loaded_model(pool, slot) for slot in loaded],
        budget_bytes=pool.budget_bytes,
        used_bytes=pool.used_bytes(),
    )


@post("/api/v0/models/load", status_code=200, summary="Load a model", tags=TAGS, opt={"request": LoadRequest})
async def load_model(request: Request, pool: NamedDependency[ModelPool]) -> LoadedModel:
    body = decode_body(await request.body(), LoadRequest)
    async with pool.acquire(body.model, ttl=body.ttl):
        pass
    return loaded_model(pool, pool.get(body.model))


@post(
    "/api/v0/models/unload",
    status_code=200,
    summary="Unload a model",
    tags=TAGS,
    opt={"request": UnloadRequest},
)
async def unload_model(request: Request, pool: NamedDependency[ModelPool]) -> UnloadResponse:
    body = decode_body(await request.body(), UnloadRequest)
    slot = pool.get(body.model)
    return UnloadResponse(slot.model_id, await pool.unload(slot.model_id))


@post(
    "/api/v0/models/pull",
    status_code=200,
    summary="Download a model; progress as server-sent events",
    tags=TAGS,
    opt={"request": PullRequest, "sse": PullEvent},
)
async def pull_model(request: Request, pool: NamedDependency[ModelPool]) -> Stream:
    body = decode_body(await request.body(), PullRequest)
    pool.catalog.pull_source(body.model)  # 404 now, before the stream starts
    return Stream(_pull_events(pool, body.model), media_type="text/event-stream", headers=SSE_HEADERS)


# One handler for both methods: Litestar's OPTIONS answer lists only one of two handlers on a path.
@route(
    "/api/v0/models/{model_id:path}",
    http_method=[HttpMethod.GET, HttpMethod.DELETE],
    status_code=200,
    summary="Retrieve a model (GET) or delete its cached files (DELETE; refused while loaded)",
    tags=TAGS,
)
async def model_by_id(
    model_id: FromPath[str], request: Request, pool: NamedDependency[ModelPool]
) -> ModelInfo | DeletedModel:
    if request.method == HttpMethod.DELETE:
        slot = await pool.catalog.delete(model_id.lstrip("/"))
        return DeletedModel(slot.model_id, deleted=True)
    return model_info(pool, pool.get(model_id.lstrip("/")))


@dataclass
class Downloading:
    """A pull's progress: bytes done, of total when the source says."""

    done: int
    total: int | None


@dataclass
class Pulled:
    """A pull's end: the model id it serves under and its local files."""

    model_id: str
    path: Path


async def pull_progress(pool: ModelPool, name: str) -> AsyncIterator[Downloading | Pulled]:
    """Run a pull on its download thread: progress at most every PROGRESS_INTERVAL, then the result.

    The management API streams it as SSE, Ollama's /api/pull as NDJSON; a failure is raised.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Downloading] = asyncio.Queue()
    last = 0.0
    cancel = threading.Event()  # set when the client leaves: the download stops

    def progress(done: int, total: int | None) -> None:  # called on the download thread
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL or (total is not None and done >= total):
            last = now
            loop.call_soon_threadsafe(events.put_nowait, Downloading(done, total))

    task = asyncio.ensure_future(pool.catalog.pull(name, progress, cancel))
    # Its outcome is read below, or nobody's once the client has gone.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        while not task.done():
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait([task, getter], return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        while not events.empty():
            yield events.get_nowait()
        yield Pulled(*task.result())
    finally:
        if not task.done():
            cancel.set()  # the consumer stopped early: its client left


async def _pull_events(pool: ModelPool, name: str) -> AsyncIterator[bytes]:
    yield sse(PullEvent(status="pulling", model=name))
    try:
        async for event in pull_progress(pool, name):
            if isinstance(event, Downloading):
                yield sse(
                    PullEvent(status="downloading", model=name, completed=event.done, total=event.total)
                )
            else:
                yield sse(PullEvent(status="success", model=event.model_id, path=str(event.path)))
    except Exception as exc:
        yield sse_error(exc)
    yield SSE_DONE
