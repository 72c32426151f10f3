"""Loading a model: its files fetched, its bytes estimated, its engine chosen, built and started."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from radis_mlx.config import ENCODER_KINDS, Config, ModelEntry, ReasoningMarkers
from radis_mlx.engines.base import Engine
from radis_mlx.engines.registry import choose_engine, create_engine
from radis_mlx.errors import ModelLoadError, RadisError
from radis_mlx.generation.reasoning import detect_reasoning
from radis_mlx.generation.types import ReasoningFormat
from radis_mlx.pool import budget
from radis_mlx.pool.budget import Estimate
from radis_mlx.store import ModelStore
from radis_mlx.store.templates import read_chat_template, read_fim_template
from radis_mlx.store.vision import find_projector

log = logging.getLogger(__name__)


class Loader:
    """The pool's way from a model entry to a started engine."""

    def __init__(self, config: Config, store: ModelStore) -> None:
        self.config = config
        self.store = store
        self._paths: dict[str, Path] = {}  # materialized by estimate(), picked up by build()

    async def estimate(self, model_id: str, entry: ModelEntry) -> Estimate:
        """The model's bytes from its files (fetched first if need be): weights, KV cache, prompt cache."""
        path = await asyncio.to_thread(self.store.materialize, entry.source)
        self._paths[model_id] = path
        try:
            encoder = entry.kind in ENCODER_KINDS
            estimate = budget.estimate(path, entry.context_length, embedding=encoder)
            if not encoder and choose_engine(entry, path)[0] in ("mlx", "llamacpp"):
                # + its prompt cache's bound (MLX's, or llama.cpp's --cache-ram; none when distributed)
                cache_bytes = self.config.prompt_cache_bytes(entry)
                estimate = Estimate(estimate.weights, estimate.kv_cache + cache_bytes)
            projector = await asyncio.to_thread(self.projector, entry, path)
            if projector is not None:  # a GGUF's vision projector loads beside it
                estimate = Estimate(estimate.weights + projector.stat().st_size, estimate.kv_cache)
            return estimate
        except (OSError, ValueError) as exc:  # unreadable metadata: the engine reports the real error
            log.warning("cannot estimate %s from its files (%s); counting its size only", model_id, exc)
            return Estimate(path.stat().st_size if path.is_file() else 0)

    async def build(self, model_id: str, entry: ModelEntry) -> Engine:
        """The started engine for a model, with the templates its files carry."""
        # Materialized by the estimate just before, unless a test's estimator stood in for it.
        path = self._paths.pop(model_id, None)
        if path is None:
            path = await asyncio.to_thread(self.store.materialize, entry.source)
        name, reason = choose_engine(entry, path)
        projector = await asyncio.to_thread(self.projector, entry, path)
        log.info("loading %s with the %s engine (%s)", model_id, name, reason)
        if projector is not None:
            log.info("%s: vision projector %s", model_id, projector)
        engine = create_engine(model_id, entry, path, self.config, projector)
        if entry.kind not in ENCODER_KINDS:
            # Read from the model's files, so every engine picks the same tool-call format for a model.
            engine.chat_template = entry.chat_template or read_chat_template(path)
            engine.fim_template = entry.fim_template or read_fim_template(path)
            engine.parse_special = entry.parse_special
            engine.reasoning = model_reasoning(entry, engine.chat_template)
        try:
            await engine.start()
        except RadisError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"loading '{model_id}' failed: {type(exc).__name__}: {exc}") from exc
        return engine

    def projector(self, entry: ModelEntry, path: Path) -> Path | None:
        """A GGUF model's vision projector for llama.cpp: the entry's `mmproj` (fetched like a source), else
        one beside the model that fits it (blocking)."""
        if entry.kind in ENCODER_KINDS or choose_engine(entry, path)[0] != "llamacpp":
            return None
        if entry.mmproj is not None:
            return self.store.materialize(entry.mmproj)
        return find_projector(path)


def model_reasoning(entry: ModelEntry, template: str | None) -> ReasoningFormat | None:
    """The entry's reasoning format (set, or read from the template) with its default budget."""
    setting = entry.reasoning
    if isinstance(setting, ReasoningMarkers):
        fmt = detect_reasoning(template, "auto", (setting.start, setting.end))
    else:
        fmt = detect_reasoning(template, setting)
    return dataclasses.replace(fmt, budget=entry.reasoning_budget) if fmt is not None else None
