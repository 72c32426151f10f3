"""GET /v1/models: OpenAI's Model object plus extension fields the SDKs ignore."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class Model(Struct):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"
    # Extensions (LM Studio / Ollama users expect to see these).
    state: str = "not-loaded"
    engine: str = "auto"
    kind: str = "llm"
    context_length: int | None = None
    quantization: str | None = None
    size_bytes: int | None = None
    description: str = ""
    # Where the model comes from: "config" (models.toml), "hf-cache", "model-dir", "cache" (radis-mlx's
    # downloads), "lmstudio" or "ollama" (found in those apps' folders, served read-only).
    origin: str = "config"
    # Engine facts of a loaded model, e.g. a distributed group's strategy, hosts and per-rank bytes.
    details: dict[str, str] | None = None


class ModelList(Struct):
    data: list[Model]
    object: Literal["list"] = "list"
