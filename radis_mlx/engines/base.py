"""The one small protocol every engine implements.

Engines take and return the plain dataclasses of generation/types.py; they never see JSON, schemas
or HTTP.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import (
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ReasoningFormat,
    RerankResult,
    Tokenized,
)


@dataclass
class EngineInfo:
    """What the pool and /v1/models report about a loaded engine."""

    name: str
    context_length: int
    size_bytes: int = 0
    details: dict[str, str] = field(default_factory=dict)


class Engine(abc.ABC):
    """A loaded model. start() loads it, close() frees it; the pool calls both exactly once."""

    info: EngineInfo
    # The Jinja chat template messages are rendered with (the entry's override or the model's own; set by
    # the pool's loader). generation/tools.py reads the tool-call format from it, the same for every engine.
    chat_template: str | None = None
    # The fill-in-the-middle template (`{prefix}`/`{suffix}`) completions' `suffix` uses; None: no FIM.
    # Set by the loader from the entry or the model's vocabulary (store/templates.py).
    fim_template: str | None = None
    # Special-token text inside messages becomes control tokens (models.toml `parse_special`; set by the
    # loader). Off: it is tokenized as text, only the template's own markers are special
    # (generation/special_text.py).
    parse_special: bool = False
    # How the model marks its reasoning (generation/reasoning.py); None: no reasoning. Set by the loader.
    reasoning: ReasoningFormat | None = None
    # What a request may give it: ("text",), or ("text", "image") for a vision model.
    input_modalities: tuple[str, ...] = ("text",)

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model; raise a RadisError when it cannot be loaded."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Free the model and everything it holds (threads, children, memory)."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream a generation; errors before the first chunk are request errors."""
        raise InvalidRequestError("this model cannot generate text", param="model", code="model_not_llm")

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        """Embed each input into one vector."""
        raise InvalidRequestError("this model cannot produce embeddings", param="model")

    async def rerank(self, query: str, documents: list[str]) -> RerankResult:
        """Score each document's relevance to the query (cross-encoders)."""
        raise InvalidRequestError("this model is not a reranker", param="model", code="model_not_reranker")

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        """A text's token ids as generation (or embedding) would see them; the pieces if asked."""
        raise InvalidRequestError("this model has no tokenizer", param="model")

    async def detokenize(self, tokens: list[int]) -> str:
        """Text for token ids (echo of a token prompt)."""
        raise InvalidRequestError("this model has no tokenizer", param="prompt")

    def stats(self) -> dict[str, int]:
        """Scheduler counters (requests waiting, active, finished, cancelled, prompt cache); {} if none."""
        return {}
