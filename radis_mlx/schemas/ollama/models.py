"""Ollama's model routes (/api/tags, /api/show, /api/ps, /api/version, /api/pull, /api/delete) and
its embeddings (/api/embed: L2-normalised; /api/embeddings: the legacy route, raw vectors).

`model` (or the older `name`) names a model; lists answer `[]`, never null; `model_info` is always
present (the Python client requires the key).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from msgspec import Meta, Struct

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import EmbeddingResult
from radis_mlx.schemas.ollama.common import KeepAlive, Options, keep_alive_seconds

# Metadata Ollama leaves out of model_info, and arrays it empties unless `verbose`.
_HIDDEN_KEYS = ("general.name", "tokenizer.chat_template")
_SHORT_ARRAY = 5


class NamedRequest(Struct, kw_only=True):
    """A request naming one model: `model`, or `name` as older clients send it."""

    model: str = ""
    name: str = ""

    @property
    def model_name(self) -> str:
        """The model asked for; 400 when neither field names one."""
        named = self.model or self.name
        if not named:
            raise InvalidRequestError("model is required", param="model")
        return named


class ShowRequest(NamedRequest, kw_only=True):
    verbose: bool = False
    system: str | None = None  # accepted, not used
    options: dict[str, Any] | None = None  # accepted, not used


class OllamaPullRequest(NamedRequest, kw_only=True):
    stream: bool = True
    insecure: bool = False  # accepted, not used (as Ollama, which deprecated it)


class DeleteRequest(NamedRequest, kw_only=True):
    pass


class ModelDetails(Struct, kw_only=True):
    parent_model: str = ""
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str
    context_length: int | None = None
    embedding_length: int | None = None

    @classmethod
    def of(
        cls, file_format: str | None, arch: str | None, quantization: str | None, meta: dict
    ) -> ModelDetails:
        """From the files: "gguf", or "safetensors" (Ollama's word for MLX-format folders)."""
        family = arch or ""
        return cls(
            format="safetensors" if file_format == "mlx" else file_format or "",
            family=family,
            families=[family] if family else None,
            parameter_size=parameter_size(meta),
            quantization_level=quantization or "",
            context_length=_int(meta.get(f"{family}.context_length")),
            embedding_length=_int(meta.get(f"{family}.embedding_length")),
        )


class ListModel(Struct, kw_only=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    capabilities: list[str]


class ListResponse(Struct):
    models: list[ListModel]


class ShowResponse(Struct, kw_only=True, omit_defaults=True):
    modelfile: str
    parameters: str
    template: str
    system: str | None = None
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class ProcessModel(Struct, kw_only=True):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int


class ProcessResponse(Struct):
    models: list[ProcessModel]


class VersionResponse(Struct):
    version: str


class ProgressResponse(Struct, kw_only=True, omit_defaults=True):
    """One line of a pull: a status, and for a download its digest and bytes done (of total, if known)."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


def parameter_size(meta: dict[str, Any]) -> str:
    """Ollama's parameter_size (format.HumanNumber of general.parameter_count), else the size label."""
    count = _int(meta.get("general.parameter_count"))
    if count is None:
        return str(meta.get("general.size_label") or "")
    for scale, unit, decimals in ((1e9, "B", 1), (1e6, "M", 2), (1e3, "K", 1)):
        if count >= scale:
            number = count / scale
            return f"{number:.0f}{unit}" if number == int(number) else f"{number:.{decimals}f}{unit}"
    return str(count)


def model_info(meta: dict[str, Any], verbose: bool) -> dict[str, Any]:
    """The model's metadata as /api/show lists it: no name or template, long arrays emptied."""
    shown = {}
    for key, value in meta.items():
        if key in _HIDDEN_KEYS:
            continue
        if isinstance(value, list) and len(value) > _SHORT_ARRAY and not verbose:
            value = []
        shown[key] = value
    return shown


def parameters_text(parameters: dict[str, Any]) -> str:
    """/api/show's `parameters`: one `key value` line each, the key padded to 30 columns (Go's %-30s %#v)."""
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            shown = (
                f'"{item}"'
                if isinstance(item, str)
                else str(item).lower()
                if isinstance(item, bool)
                else item
            )
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# Embeddings


class EmbedRequest(NamedRequest, kw_only=True):
    input: str | list[str] | None = None
    truncate: bool = True  # the entry's `truncate` decides; accepted
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    options: Options | None = None
    keep_alive: KeepAlive | None = None

    def inputs(self, max_inputs: int) -> list[str]:
        """The texts to embed; none (an empty input) only loads the model."""
        items = [self.input] if isinstance(self.input, str) else list(self.input or [])
        items = [] if items == [""] else items
        if len(items) > max_inputs:
            raise InvalidRequestError(
                f"input has {len(items)} entries; this model takes at most {max_inputs} per request",
                param="input",
            )
        empty = next((i for i, text in enumerate(items) if not text), None)
        if empty is not None:
            raise InvalidRequestError(f"input[{empty}] is empty", param="input")
        return items

    def keep_alive_seconds(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)

    def vectors(self, result: EmbeddingResult) -> list[list[float]]:
        """Each vector cut to `dimensions` (if shorter) and L2-normalised, as Ollama's normalize()."""
        vectors = np.asarray(result.vectors, dtype=np.float32)
        if self.dimensions is not None and self.dimensions < vectors.shape[1]:
            vectors = vectors[:, : self.dimensions]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).tolist()


class EmbedResponse(Struct, kw_only=True, omit_defaults=True):
    model: str
    embeddings: list[list[float]]
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class EmbeddingsRequest(NamedRequest, kw_only=True):
    prompt: str = ""
    options: Options | None = None
    keep_alive: KeepAlive | None = None

    def keep_alive_seconds(self) -> float | None:
        return keep_alive_seconds(self.keep_alive)


class EmbeddingsResponse(Struct):
    embedding: list[float]
