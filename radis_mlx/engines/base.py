"""The one small protocol every engine implements, and the plain data it speaks.

Engines never see JSON or schemas: the HTTP layer converts requests into these dataclasses,
and converts what engines yield back into OpenAI responses.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from radis_mlx.errors import InvalidRequestError


@dataclass
class SamplingParams:
    """How to pick each next token. temperature 0 means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class GenerationRequest:
    """One generation: either chat messages (templated by the engine) or a raw prompt."""

    messages: list[ChatMessage] | None = None
    prompt: str | list[int] | None = None
    # None: up to the end of the context window.
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # A JSON schema the output must match (constrained decoding); None: free text.
    json_schema: dict[str, Any] | None = None
    # Report each token's logprob with this many alternatives (0..20); None: no logprobs.
    logprobs: int | None = None


@dataclass
class TokenLogprob:
    """One generated token: its text, raw bytes and log probability; `top` holds the alternatives."""

    token: str
    logprob: float
    bytes: bytes
    top: list[TokenLogprob] = field(default_factory=list)


@dataclass
class GenerationChunk:
    """A piece of output. The last chunk has finish_reason set and the final counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The tokens behind `text` when logprobs were asked for (a token whose text is held back comes later).
    logprobs: list[TokenLogprob] | None = None


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


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

    async def detokenize(self, tokens: list[int]) -> str:
        """Text for token ids (echo of a token prompt)."""
        raise InvalidRequestError("this model has no tokenizer", param="prompt")
