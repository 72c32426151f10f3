"""Memory arithmetic for the pool: the machine's budget, and a model's bytes estimated from its files.

An estimate is the weights (the GGUF file, or the safetensors in an MLX folder) plus the KV cache
for the configured context: 2 (K and V) × layers × kv_heads × head_dim × context × 2 bytes (f16),
read from the GGUF metadata or config.json. Embedding models keep no KV cache.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radis_mlx.store.gguf import gguf_metadata, weight_bytes

GIB = 1024**3
# Off Apple Silicon the budget is this share of RAM; the rest is left to the OS and other programs.
RAM_FRACTION = 0.75
KV_BYTES = 2  # f16/bf16 cache entries, as both engines keep them


@dataclass(frozen=True)
class Estimate:
    """A model's expected resident bytes before it is loaded."""

    weights: int
    kv_cache: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache


def physical_memory() -> int:
    """Total RAM in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget() -> int:
    """MLX's recommended working set on Apple Silicon; elsewhere a share of total RAM."""
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        try:
            import mlx.core as mx

            info = mx.device_info() if hasattr(mx, "device_info") else mx.metal.device_info()
            return int(info["max_recommended_working_set_size"])
        except Exception:  # no Metal device (e.g. a VM): fall back to RAM
            pass
    return int(physical_memory() * RAM_FRACTION)


def format_bytes(size: int | float) -> str:
    """1.5 GiB, 230.0 MiB, ..."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def estimate(path: Path, context_length: int | None, *, embedding: bool = False) -> Estimate:
    """Weights + KV cache for a GGUF file (all its shards) or an MLX/safetensors folder."""
    stat = path.stat()
    return _estimate(path, stat.st_size, stat.st_mtime_ns, context_length, embedding)


@functools.lru_cache(maxsize=256)
def _estimate(path: Path, size: int, mtime: int, context: int | None, embedding: bool) -> Estimate:
    if path.is_file():
        meta = gguf_metadata(path)
        arch = str(meta.get("general.architecture", ""))
        heads = int(meta.get(f"{arch}.attention.head_count", 0) or 0)
        width = int(meta.get(f"{arch}.embedding_length", 0) or 0)
        head_dim = int(meta.get(f"{arch}.attention.key_length", 0) or (width // heads if heads else 0))
        shape = (
            int(meta.get(f"{arch}.block_count", 0) or 0),
            int(meta.get(f"{arch}.attention.head_count_kv", 0) or heads),
            head_dim,
            context or int(meta.get(f"{arch}.context_length", 0) or 0),
        )
        return Estimate(weight_bytes(path), 0 if embedding else kv_cache_bytes(*shape))
    weights = sum(p.stat().st_size for p in path.rglob("*.safetensors"))
    config = _config_json(path)
    heads = int(config.get("num_attention_heads", 0) or 0)
    head_dim = int(config.get("head_dim") or (int(config.get("hidden_size", 0)) // heads if heads else 0))
    shape = (
        int(config.get("num_hidden_layers", 0) or 0),
        int(config.get("num_key_value_heads") or heads),
        head_dim,
        context or int(config.get("max_position_embeddings", 0) or 0),
    )
    return Estimate(weights, 0 if embedding else kv_cache_bytes(*shape))


@dataclass(frozen=True)
class FileFacts:
    """What /v1/models and /api/v0/models say about a model's files before it is loaded."""

    format: str  # "gguf" or "mlx"
    arch: str | None
    quantization: str | None
    weights: int


def file_facts(path: Path) -> FileFacts | None:
    """Format, architecture, quantization and weight bytes of a GGUF file or model folder."""
    try:
        if path.is_file():
            arch = gguf_metadata(path).get("general.architecture")
            return FileFacts("gguf", str(arch) if arch else None, quantization(path), weight_bytes(path))
        if not path.is_dir():
            return None
        weights = sum(p.stat().st_size for p in path.rglob("*.safetensors"))
        arch = _config_json(path).get("model_type")
        return FileFacts("mlx", str(arch) if arch else None, quantization(path), weights)
    except (OSError, ValueError, struct.error):
        return None


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, context: int) -> int:
    """K and V for every layer and position of a full context."""
    return 2 * layers * kv_heads * head_dim * context * KV_BYTES


def quantization(path: Path) -> str | None:
    """'Q4_1', '4bit', 'float16' ... as far as the files say; None when unknown."""
    try:
        if path.is_file():
            file_type = gguf_metadata(path).get("general.file_type")
            if file_type is None:
                return None
            import gguf

            return str(gguf.LlamaFileType(int(file_type)).name).removeprefix("MOSTLY_")
        config = _config_json(path)
    except (OSError, ValueError, struct.error):
        return None
    quant = config.get("quantization") or config.get("quantization_config")
    if isinstance(quant, dict) and "bits" in quant:
        return f"{quant['bits']}bit"
    dtype = config.get("torch_dtype") or config.get("dtype")
    return str(dtype) if dtype else None


def _config_json(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    text = config.get("text_config")  # multimodal configs nest the language model's shape
    return {**config, **text} if isinstance(text, dict) else config
