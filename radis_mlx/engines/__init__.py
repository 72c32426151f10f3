"""Engines and the rule that picks one for a model entry."""

from __future__ import annotations

from pathlib import Path

from radis_mlx.config import Config, ModelEntry
from radis_mlx.engines.base import Engine
from radis_mlx.errors import UnsupportedModelError


def choose_engine(entry: ModelEntry, path: Path) -> tuple[str, str]:
    """Which engine serves this entry, and why (logged at load)."""
    if entry.engine != "auto":
        return entry.engine, "set in models.toml"
    return "mlx", "engine = auto"


def create_engine(model_id: str, entry: ModelEntry, path: Path, config: Config) -> Engine:
    """Build (not start) the engine for a materialized model."""
    name, _ = choose_engine(entry, path)
    if entry.kind == "llm" and name == "mlx":
        from radis_mlx.engines.mlx_llm import MlxLlmEngine

        return MlxLlmEngine(model_id, path, context_length=entry.context_length, cache_dir=config.cache_dir)
    raise UnsupportedModelError(f"no engine serves kind '{entry.kind}' with engine '{name}'", param="model")
