"""The one small protocol every engine implements, and the plain data it speaks.

Engines never see JSON or schemas: the HTTP layer converts requests into these dataclasses,
and converts what engines yield back into OpenAI responses.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError


def completion_room(context_length: int, prompt_tokens: int, max_tokens: int | None, param: str) -> int:
    """The completion's token budget: max_tokens, or all the room the prompt leaves in the context.

    An empty prompt, or one that leaves no room for max_tokens, is a request error (every engine's).
    """
    if prompt_tokens == 0:
        raise InvalidRequestError("the prompt is empty", param="prompt")
    room = context_length - prompt_tokens
    wanted = room if max_tokens is None else max_tokens
    if room <= 0 or wanted > room:
        raise ContextLengthExceeded.of(context_length, prompt_tokens, wanted, param)
    return wanted


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
class ToolDefinition:
    """A function the model may call: its name, what it does, and a JSON schema for its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class ToolCall:
    """One call the model made (or made earlier, in a conversation): `arguments` is a JSON text."""

    id: str
    name: str
    arguments: str


@dataclass
class FunctionChoice:
    """tool_choice naming one function: the model must call exactly that one."""

    name: str


# "auto": text or calls, the model decides; "none": text only; "required": at least one call.
ToolChoice = Literal["auto", "none", "required"] | FunctionChoice


@dataclass
class ChatMessage:
    """One message. Assistant messages may carry `tool_calls` (content then may be None);
    role "tool" messages answer the call named by `tool_call_id`."""

    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


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
    # Tool calling, handled engine-neutrally by engines/tools.py (api/common.generate_until runs it):
    # any API family just fills these; chunks then carry parsed `tool_calls`, finish_reason "tool_calls".
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    # Set by engines/tools.py only: text the assistant's reply is made to start with (rendered after the
    # chat template's generation prompt, not part of the output), e.g. the model's tool-call marker.
    assistant_prefix: str = ""


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
    # Calls completed in this chunk, each whole and exactly once (when the request had tools).
    tool_calls: list[ToolCall] | None = None
    # Prompt tokens whose KV came from the prompt cache (usage.prompt_tokens_details.cached_tokens).
    cached_tokens: int = 0


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
    # The Jinja chat template messages are rendered with (the entry's override or the model's own; set by
    # create_engine). engines/tools.py reads the tool-call format from it, the same for every engine.
    chat_template: str | None = None
    # The fill-in-the-middle template (`{prefix}`/`{suffix}`) completions' `suffix` uses; None: no FIM.
    # Set by create_engine from the entry or the model's vocabulary (engines/fim.py).
    fim_template: str | None = None

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

    def stats(self) -> dict[str, int]:
        """Scheduler counters (requests waiting, active, finished, cancelled, prompt cache); {} if none."""
        return {}
