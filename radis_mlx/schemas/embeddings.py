"""POST /v1/embeddings, named and ordered as in the OpenAI reference."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import numpy as np
from msgspec import Meta, Struct

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import EmbeddingResult
from radis_mlx.schemas.common import TtlSeconds, split_inputs

# A string, a list of strings, a token list, or a list of token lists; msgspec allows one array
# type per union, so the element type is a union checked in to_inputs().
EmbeddingInput = str | list[str | int | list[int]]


class EmbeddingRequest(Struct, kw_only=True):
    # Optional here so a missing input is a 400 naming `input`, like every other input error.
    input: EmbeddingInput | None = None
    model: str
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    # Extension (LM Studio): seconds this model may stay loaded while idle, from this request on.
    ttl: TtlSeconds | None = None

    def to_inputs(self, max_inputs: int) -> list[str] | list[list[int]]:
        """The engine's inputs: texts, or token-id lists; 400 for empty, mixed or too many."""
        if self.input is None:
            raise InvalidRequestError("you must provide an input", param="input")
        items = split_inputs(self.input, "input", allow_empty_text=False)
        if len(items) > max_inputs:
            raise InvalidRequestError(
                f"input has {len(items)} entries; this model takes at most {max_inputs} per request",
                param="input",
            )
        return items  # type: ignore[return-value]

    def to_response(self, result: EmbeddingResult, *, matryoshka: bool) -> CreateEmbeddingResponse:
        """Fit the vectors to `dimensions`, encode them, and count usage."""
        vectors = np.asarray(result.vectors, dtype=np.float32)
        size = vectors.shape[1]
        if self.dimensions is not None and self.dimensions != size:
            if self.dimensions > size:
                raise InvalidRequestError(
                    f"dimensions {self.dimensions} is larger than this model's {size}", param="dimensions"
                )
            if not matryoshka:
                raise InvalidRequestError(
                    f"this model only produces {size}-dimensional embeddings; it was not trained "
                    "for shorter ones (set matryoshka = true on its entry to allow them)",
                    param="dimensions",
                )
            # Matryoshka models: a prefix of the vector, re-normalized, is itself an embedding.
            vectors = vectors[:, : self.dimensions]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = [Embedding(self._encode(v), i) for i, v in enumerate(vectors)]
        # Embeddings have no completion: the total is the prompt.
        usage = EmbeddingUsage(result.prompt_tokens, result.prompt_tokens)
        return CreateEmbeddingResponse(data=data, model=self.model, usage=usage)

    def _encode(self, vector: np.ndarray) -> list[float] | str:
        if self.encoding_format == "base64":
            return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        return vector.tolist()


class Embedding(Struct):
    embedding: list[float] | str
    index: int
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(Struct, kw_only=True):
    data: list[Embedding]
    model: str
    object: Literal["list"] = "list"
    usage: EmbeddingUsage
