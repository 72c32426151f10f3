"""GET /v1/models and /v1/models/{id}: everything servable, with its state."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath

from radis_mlx.pool import ModelPool, PoolSlot
from radis_mlx.schemas.models import Model, ModelList


def describe(pool: ModelPool, slot: PoolSlot) -> Model:
    """The OpenAI Model object for a pool slot, with our extension fields."""
    info = slot.engine.info if slot.engine is not None else None
    facts = pool.catalog.facts(slot)
    return Model(
        id=slot.model_id,
        created=slot.created,
        owned_by="radis-mlx",
        state=slot.state.value,
        engine=info.name if info else slot.entry.engine,
        kind=slot.entry.kind,
        input_modalities=pool.catalog.input_modalities(slot),
        context_length=info.context_length if info else slot.entry.context_length,
        quantization=facts.quantization if facts else None,
        size_bytes=(info.size_bytes if info else 0) or (facts.weights if facts else None),
        description=slot.entry.description,
        origin=slot.origin,
        details=dict(info.details) if info and info.details else None,
    )


@get("/v1/models", summary="List models", tags=["OpenAI"])
async def list_models(pool: NamedDependency[ModelPool]) -> ModelList:
    await pool.refresh_listing()
    return ModelList(data=[describe(pool, slot) for slot in pool.slots()])


@get("/v1/models/{model_id:path}", summary="Retrieve a model", tags=["OpenAI"])
async def retrieve_model(model_id: FromPath[str], pool: NamedDependency[ModelPool]) -> Model:
    return describe(pool, pool.get(model_id.lstrip("/")))


@get("/health", summary="Liveness", tags=["Server"])
async def health() -> dict[str, str]:
    return {"status": "ok"}
