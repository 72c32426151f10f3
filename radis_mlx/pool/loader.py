"""Loading a model: its files fetched, its bytes estimated, its engine chosen, built and started."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from radis_mlx.config import Config, ModelEntry, ReasoningMarkers
from radis_mlx.engines.base import Engine
from radis_mlx.engines.registry import choose_engine, create_engine
from radis_mlx.errors import ModelLoadError, RadisError
from radis_mlx.generation.reasoning import detect_reasoning
from radis_mlx.generation.types import ReasoningFormat
from radis_mlx.pool import budget
from radis_mlx.pool.budget import Estimate
from radis_mlx.store import ModelStore
from radis_mlx.store.templates import read_chat_template, read_fim_template

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
            estimate = budget.estimate(path, entry.context_length, embedding=entry.kind != "llm")
            if entry.kind == "llm" and choose_engine(entry, path)[0] in ("mlx", "llamacpp"):
                # + its prompt cache's bound (MLX's, or llama.cpp's --cache-ram; none when distributed)
                cache_bytes = self.config.prompt_cache_bytes(entry)
                estimate = Estimate(estimate.weights, estimate.kv_cache + cache_bytes)
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
        log.info("loading %s with the %s engine (%s)", model_id, name, reason)
        engine = create_engine(model_id, entry, path, self.config)
        if entry.kind == "llm":
            # Read from the model's files, so every engine picks the same tool-call format for a model.
            engine.chat_template = entry.chat_template or read_chat_template(path)
            engine.fim_template = entry.fim_template or read_fim_template(path)
            engine.reasoning = model_reasoning(entry, engine.chat_template)
        try:
            await engine.start()
        except RadisError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"loading '{model_id}' failed: {type(exc).__name__}: {exc}") from exc
        return engine


def model_reasoning(entry: ModelEntry, template: str | None) -> ReasoningFormat | None:
    """The entry's reasoning format (set, or read from the template) with its default budget."""
    setting = entry.reasoning
    if isinstance(setting, ReasoningMarkers):
        fmt = detect_reasoning(template, "auto", (setting.start, setting.end))
    else:
        fmt = detect_reasoning(template, setting)
    return dataclasses.replace(fmt, budget=entry.reasoning_budget) if fmt is not None else None
