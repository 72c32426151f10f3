"""Which model files can see: an MLX folder with a vision tower, a GGUF with a projector (mmproj) fitting it.

A projector beside a GGUF fits when its projection width is the model's embedding width (llama.cpp refuses
any other); a folder of many GGUFs and one mmproj then gives it only to the model it was made for.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import struct
from pathlib import Path

from radis_mlx.store.gguf import gguf_metadata, is_gguf, is_projector


def has_vision_tower(folder: Path) -> bool:
    """An MLX/transformers model folder whose config.json describes a vision encoder."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("vision_config"), dict)


def mlx_vlm_installed() -> bool:
    """Whether the `[vision]` extra (mlx-vlm) is installed (found without importing it)."""
    return importlib.util.find_spec("mlx_vlm") is not None


def find_projector(model: Path) -> Path | None:
    """An mmproj GGUF beside a `*.gguf` model that fits it (first by name), or None."""
    if model.suffix.lower() != ".gguf" or not model.is_file():
        return None  # an Ollama blob: its manifest names its projector
    try:
        folder_version = model.parent.stat().st_mtime_ns
    except OSError:
        return None
    return _find_projector(model, folder_version)


@functools.lru_cache(maxsize=1024)
def _find_projector(model: Path, folder_version: int) -> Path | None:
    width = _width(model)
    try:
        siblings = sorted(p for p in model.parent.iterdir() if p != model and p.suffix.lower() == ".gguf")
    except OSError:
        return None
    for path in siblings:
        if path.is_file() and is_projector(path) and fits(path, width):
            return path
    return None


def fits(projector: Path, width: int | None) -> bool:
    """Whether a projector's output width matches a model's embedding width (unknown widths fit)."""
    try:
        dim = gguf_metadata(projector).get("clip.vision.projection_dim")
    except (OSError, ValueError, struct.error):
        return False
    return width is None or dim is None or int(dim) == width


def _width(model: Path) -> int | None:
    if not is_gguf(model):
        return None
    try:
        meta = gguf_metadata(model)
    except (OSError, ValueError, struct.error):
        return None
    width = meta.get(f"{meta.get('general.architecture', '')}.embedding_length")
    return int(width) if width else None
