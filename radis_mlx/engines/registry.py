"""Which engine serves a model entry, and building it (the registry of engine families)."""

from __future__ import annotations

import platform
import struct
from pathlib import Path

from radis_mlx.config import ENCODER_KINDS, Config, ModelEntry
from radis_mlx.engines.base import Engine
from radis_mlx.errors import UnsupportedModelError
from radis_mlx.store.gguf import gguf_metadata, is_gguf
from radis_mlx.store.vision import has_vision_tower, mlx_vlm_installed


def choose_engine(entry: ModelEntry, path: Path) -> tuple[str, str]:
    """Which engine serves this entry, and why (logged at load)."""
    if entry.distributed is not None:
        return "mlx-distributed", "distributed = {...} in models.toml"
    if entry.engine != "auto":
        return entry.engine, "engine set in models.toml"
    if entry.kind in ENCODER_KINDS:
        return _encoder_engine(path)
    if not is_gguf(path):
        return "mlx", "engine = auto and the source is MLX-format"
    if entry.kind == "vlm":
        return "llamacpp", "engine = auto and a GGUF vision model (MLX runs no GGUF projector)"
    host = f"{platform.system()} {platform.machine()}"
    if host == "Darwin arm64":
        return "mlx", f"engine = auto and a GGUF source on {host} (converted to MLX once)"
    return "llamacpp", f"engine = auto and a GGUF source on {host}, where MLX has no GPU"


def reads_images(entry: ModelEntry, path: Path, projector: Path | str | None) -> bool:
    """Whether the engine this entry gets takes images: mlx-vlm for an MLX folder with a vision tower
    (`kind = "vlm"`: even without the extra, whose absence its load then reports), llama.cpp with a
    projector."""
    if entry.kind in ENCODER_KINDS:
        return False
    engine, _ = choose_engine(entry, path)
    if engine == "llamacpp":
        return projector is not None
    if engine != "mlx" or is_gguf(path):
        return False
    return entry.kind == "vlm" or (has_vision_tower(path) and mlx_vlm_installed())


def _encoder_engine(path: Path) -> tuple[str, str]:
    """Embedders and cross-encoders: MLX on Apple Silicon where it runs them, llama.cpp elsewhere."""
    host = f"{platform.system()} {platform.machine()}"
    if not is_gguf(path):
        if host == "Darwin arm64":
            return "mlx", f"engine = auto and a model folder on {host}"
        return (
            "llamacpp",
            f"engine = auto on {host}, where MLX has no GPU (the folder converted to GGUF once)",
        )
    try:
        arch = gguf_metadata(path).get("general.architecture")
    except (OSError, ValueError, struct.error):
        arch = None  # unreadable: llama.cpp reports it when it loads
    if host == "Darwin arm64" and arch in MLX_ENCODER_ARCHITECTURES:
        return "mlx", f"engine = auto and a {arch} GGUF on {host} (converted to MLX once)"
    if host == "Darwin arm64":
        return "llamacpp", f"engine = auto and a {arch} GGUF, which MLX does not run"
    return "llamacpp", f"engine = auto and a GGUF source on {host}, where MLX has no GPU"


# GGUF encoder architectures the MLX engine converts (engines/mlx/gguf_bert.py).
MLX_ENCODER_ARCHITECTURES = {"bert"}

# The MLX engine's in-service default: the decode batch of its BatchGenerator (engines/mlx/batching.py).
MLX_CONCURRENCY = 32


def default_concurrency(entry: ModelEntry, path: Path, config: Config) -> int:
    """Requests one model serves at once when models.toml sets no max_concurrent: its engine's parallelism."""
    engine, _ = choose_engine(entry, path)
    if engine == "llamacpp" and entry.kind in ENCODER_KINDS:
        return entry.max_batch  # an encoder child has one slot per input of a batch
    return config.engines.llamacpp.parallel if engine == "llamacpp" else MLX_CONCURRENCY


def create_engine(
    model_id: str, entry: ModelEntry, path: Path, config: Config, projector: Path | None = None
) -> Engine:
    """Build (not start) the engine for a materialized model (`projector`: a GGUF's mmproj)."""
    name, _ = choose_engine(entry, path)
    if name == "mlx" and reads_images(entry, path, projector):
        from radis_mlx.engines.mlx.vlm import MlxVlmEngine

        return MlxVlmEngine(
            model_id,
            path,
            context_length=entry.context_length,
            cache_dir=config.cache_dir,
            prompt_cache_bytes=config.prompt_cache_bytes(entry),
        )
    if entry.kind == "llm" and name == "mlx-distributed" and entry.distributed is not None:
        from radis_mlx.engines.distributed.engine import MlxDistributedEngine

        return MlxDistributedEngine(
            model_id,
            path,
            context_length=entry.context_length,
            settings=entry.distributed,
            base_dir=Path(config.base_dir),
            cache_dir=config.cache_dir,
        )
    if entry.kind == "llm" and name == "mlx":
        from radis_mlx.engines.mlx.llm import MlxLlmEngine

        return MlxLlmEngine(
            model_id,
            path,
            context_length=entry.context_length,
            cache_dir=config.cache_dir,
            prompt_cache_bytes=config.prompt_cache_bytes(entry),
            prompt_cache_disk_bytes=config.prompt_cache_disk_bytes(entry),
            kv_dir=config.kv_dir,
        )
    if entry.kind in ENCODER_KINDS and name == "mlx":
        from radis_mlx.engines.mlx.embed import MlxEmbedEngine

        return MlxEmbedEngine(
            model_id,
            path,
            kind=entry.kind,
            context_length=entry.context_length,
            max_batch=entry.max_batch,
            truncate=entry.truncate,
            cache_dir=config.cache_dir,
        )
    if entry.kind in ENCODER_KINDS and name == "llamacpp":
        from radis_mlx.engines.llamacpp.encoder import LlamaCppEncoderEngine

        return LlamaCppEncoderEngine(
            model_id,
            path,
            kind=entry.kind,
            context_length=entry.context_length,
            settings=config.engines.llamacpp,
            max_batch=entry.max_batch,
            truncate=entry.truncate,
            cache_dir=config.cache_dir,
        )
    if entry.kind not in ENCODER_KINDS and name == "llamacpp":
        if not is_gguf(path):
            raise UnsupportedModelError(f"llama.cpp serves GGUF files; {path.name} is not one", param="model")
        from radis_mlx.engines.llamacpp.engine import LlamaCppEngine

        return LlamaCppEngine(
            model_id,
            path,
            context_length=entry.context_length,
            settings=config.engines.llamacpp,
            embedding=entry.embeddings,
            chat_template=entry.chat_template,
            prompt_cache_bytes=config.prompt_cache_bytes(entry),
            projector=projector,
        )
    raise UnsupportedModelError(f"no engine serves kind '{entry.kind}' with engine '{name}'", param="model")
