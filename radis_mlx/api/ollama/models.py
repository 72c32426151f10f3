"""Ollama's model routes on our pool: GET /api/tags, POST /api/show, GET /api/ps, GET /api/version,
HEAD / (the `ollama` CLI's heartbeat; /api/version and /api/tags too), POST /api/pull (NDJSON progress)
and DELETE /api/delete.

Models are listed under their radis-mlx ids (a request may add `:latest`); what Ollama reads from its
manifests comes from the files here: GGUF metadata, or an MLX folder's config.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, head, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.response import Stream

from radis_mlx.api.admin import Downloading, pull_progress
from radis_mlx.api.body import decode_body
from radis_mlx.api.errors import ndjson_error
from radis_mlx.api.ollama.run import NDJSON, NDJSON_HEADERS, line, resolve
from radis_mlx.errors import ModelNotFoundError
from radis_mlx.pool import ModelPool, ModelState, PoolSlot
from radis_mlx.pool.loader import model_reasoning
from radis_mlx.schemas.errors import OllamaErrorResponse
from radis_mlx.schemas.ollama.common import expires_at, local_time
from radis_mlx.schemas.ollama.models import (
    DeleteRequest,
    ListModel,
    ListResponse,
    ModelDetails,
    OllamaPullRequest,
    ProcessModel,
    ProcessResponse,
    ProgressResponse,
    ShowRequest,
    ShowResponse,
    VersionResponse,
    model_info,
    parameters_text,
)

TAGS = ["Ollama"]
RUNNING = "Ollama is running"  # what Ollama answers on / (clients probe it)
OPT = {"error": OllamaErrorResponse}
# models.toml's default names → Ollama's option names, for /api/show's parameters.
_PARAMETER_NAMES = {"repetition_penalty": "repeat_penalty", "max_tokens": "num_predict"}


@head(["/", "/api/version", "/api/tags"], include_in_schema=False, media_type=MediaType.TEXT)
async def heartbeat() -> None:
    """HEAD as Ollama answers it: the `ollama` CLI's heartbeat (HEAD /) before run/list/ps, and probes."""


@get("/api/version", summary="The Ollama version this server answers as", tags=TAGS, opt=OPT)
async def ollama_version(pool: NamedDependency[ModelPool]) -> VersionResponse:
    return VersionResponse(pool.config.server.ollama_version)


@get("/api/tags", summary="List models (Ollama)", tags=TAGS, opt=OPT)
async def ollama_tags(pool: NamedDependency[ModelPool]) -> ListResponse:
    pool.refresh()
    return ListResponse([_listed(pool, slot) for slot in pool.slots()])


@get("/api/ps", summary="List loaded models (Ollama)", tags=TAGS, opt=OPT)
async def ollama_ps(pool: NamedDependency[ModelPool]) -> ProcessResponse:
    loaded = [s for s in pool.slots() if s.state is ModelState.LOADED and s.engine is not None]
    left = {s.model_id: pool.ttl_left(s) for s in loaded}
    loaded.sort(key=lambda s: _or_forever(left[s.model_id]), reverse=True)  # Ollama: latest expiry first
    return ProcessResponse([_process(pool, slot, left[slot.model_id]) for slot in loaded])


def _or_forever(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


@post(
    "/api/show",
    status_code=200,
    summary="Show a model's details, metadata and template (Ollama)",
    tags=TAGS,
    opt={**OPT, "request": ShowRequest},
)
async def ollama_show(request: Request, pool: NamedDependency[ModelPool]) -> ShowResponse:
    body = decode_body(await request.body(), ShowRequest)
    slot = resolve(pool, body.model_name)
    meta = pool.catalog.metadata(slot)
    template = _template(slot, meta)
    info = model_info(meta, body.verbose)
    arch = meta.get("general.architecture")
    if arch:
        info[f"{arch}.context_length"] = _context_length(
            slot, meta
        )  # what it serves, not what it was trained on
    parameters = _parameters(slot)
    system = slot.entry.defaults.system
    return ShowResponse(
        modelfile=_modelfile(slot, template, system, parameters),
        parameters=parameters_text(parameters),
        template=template,
        system=system,
        details=_details(pool, slot, meta),
        model_info=info,
        capabilities=_capabilities(slot, template),
        modified_at=local_time(_modified(pool, slot)),
    )


@post(
    "/api/pull",
    status_code=200,
    summary="Download a model; NDJSON progress unless stream is false (Ollama)",
    tags=TAGS,
    opt={**OPT, "request": OllamaPullRequest, "ndjson": ProgressResponse},
)
async def ollama_pull(request: Request, pool: NamedDependency[ModelPool]) -> ProgressResponse | Stream:
    body = decode_body(await request.body(), OllamaPullRequest)
    name = body.model_name
    with contextlib.suppress(ModelNotFoundError):  # else a source: org/repo, hf:..., pypi:...
        name = resolve(pool, name).model_id  # a model we serve, `:latest` or not
    pool.catalog.pull_source(name)  # 404 (or 400) now, before any stream starts
    if not body.stream:
        async for _ in pull_progress(pool, name):
            pass
        return ProgressResponse(status="success")
    return Stream(_pull_lines(pool, name), media_type=NDJSON, headers=NDJSON_HEADERS)


@delete(
    "/api/delete",
    status_code=200,
    summary="Delete a model's cached files; refused while loaded or outside our caches (Ollama)",
    media_type=MediaType.TEXT,
    tags=TAGS,
    opt={**OPT, "request": DeleteRequest},
)
async def ollama_delete(request: Request, pool: NamedDependency[ModelPool]) -> Response[bytes]:
    body = decode_body(await request.body(), DeleteRequest)
    await pool.catalog.delete(resolve(pool, body.model_name).model_id)
    return Response(b"", status_code=200, media_type=MediaType.TEXT)  # Ollama answers 200 with no body


async def _pull_lines(pool: ModelPool, name: str) -> AsyncIterator[bytes]:
    digest = hashlib.sha256(pool.catalog.pull_source(name)[1].encode()).hexdigest()
    yield line(ProgressResponse(status="pulling manifest"))
    try:
        async for event in pull_progress(pool, name):
            if isinstance(event, Downloading):
                progress = ProgressResponse(
                    status=f"pulling {digest[:12]}",
                    digest=f"sha256:{digest}",
                    total=event.total,
                    completed=event.done,
                )
                yield line(progress)
        yield line(ProgressResponse(status="success"))
    except Exception as exc:
        yield ndjson_error(exc)


def _listed(pool: ModelPool, slot: PoolSlot) -> ListModel:
    meta = pool.catalog.metadata(slot)
    facts = pool.catalog.facts(slot)
    return ListModel(
        name=slot.model_id,
        model=slot.model_id,
        modified_at=local_time(_modified(pool, slot)),
        size=facts.weights if facts else 0,
        digest=_digest(slot),
        details=_details(pool, slot, meta),
        capabilities=_capabilities(slot, _template(slot, meta)),
    )


def _process(pool: ModelPool, slot: PoolSlot, seconds_left: float | None) -> ProcessModel:
    info = slot.engine.info if slot.engine is not None else None
    # Unified memory: an MLX model on a Mac is all in GPU memory; elsewhere we run on the CPU.
    on_gpu = info is not None and info.name.startswith("mlx") and sys.platform == "darwin"
    return ProcessModel(
        name=slot.model_id,
        model=slot.model_id,
        size=slot.held_bytes,
        digest=_digest(slot),
        details=_details(pool, slot, pool.catalog.metadata(slot)),
        expires_at=expires_at(seconds_left),
        size_vram=slot.held_bytes if on_gpu else 0,
        context_length=info.context_length if info else 0,
    )


def _details(pool: ModelPool, slot: PoolSlot, meta: dict[str, Any]) -> ModelDetails:
    facts = pool.catalog.facts(slot)
    arch = (facts.arch if facts else None) or meta.get("general.architecture")
    details = ModelDetails.of(
        facts.format if facts else None, arch, facts.quantization if facts else None, meta
    )
    details.context_length = _context_length(slot, meta) or None
    return details


def _context_length(slot: PoolSlot, meta: dict[str, Any]) -> int:
    """The context the model is (or will be) served with: the engine's, else the entry's cap on the file's."""
    if slot.engine is not None:
        return slot.engine.info.context_length
    trained = meta.get(f"{meta.get('general.architecture')}.context_length")
    limits = [int(n) for n in (slot.entry.context_length, trained) if isinstance(n, (int, float)) and n]
    return min(limits) if limits else 0


def _capabilities(slot: PoolSlot, template: str) -> list[str]:
    """Ollama's capability words. Every LLM here calls tools (the generic format needs no template)."""
    entry = slot.entry
    if entry.kind == "embedding":
        return ["embedding"]
    engine = slot.engine
    fim = entry.fim_template or (engine.fim_template if engine is not None else None)
    reasons = engine.reasoning if engine is not None else model_reasoning(entry, template or None)
    # TODO(vision): "vision" once images are served.
    return [
        "completion",
        "tools",
        *(["insert"] if fim else []),
        *(["thinking"] if reasons else []),
        *(["embedding"] if entry.embeddings else []),
    ]


def _template(slot: PoolSlot, meta: dict[str, Any]) -> str:
    if slot.engine is not None and slot.engine.chat_template:
        return slot.engine.chat_template
    template = slot.entry.chat_template or meta.get("tokenizer.chat_template")
    return template if isinstance(template, str) else ""


def _parameters(slot: PoolSlot) -> dict[str, Any]:
    defaults = msgspec.structs.asdict(slot.entry.defaults)
    shown = {_PARAMETER_NAMES.get(k, k): v for k, v in defaults.items() if v is not None and k != "system"}
    if slot.entry.context_length:
        shown["num_ctx"] = slot.entry.context_length
    return shown


def _modelfile(slot: PoolSlot, template: str, system: str | None, parameters: dict[str, Any]) -> str:
    lines = [
        "# Modelfile generated by radis-mlx (it reads models.toml, not Modelfiles)",
        f"FROM {slot.entry.source}",
    ]
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER {k} {v}" for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


def _modified(pool: ModelPool, slot: PoolSlot) -> float:
    path = pool.catalog.path_of(slot)
    try:
        return path.stat().st_mtime if path is not None else float(slot.created)
    except OSError:
        return float(slot.created)


def _digest(slot: PoolSlot) -> str:
    """64 hex digits, as Ollama's manifest digests: here of the id and where its files come from."""
    return hashlib.sha256(f"{slot.model_id}\0{slot.entry.source}".encode()).hexdigest()
