"""The engine-neutral data a request becomes and a generation yields: plain dataclasses, no JSON.

The HTTP layer converts requests into these (schemas/), engines take and return them (engines/), and
everything between (tools, grammar, stops, the runner) works on them alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from radis_mlx.errors import ContextLengthExceeded, InvalidRequestError


def completion_room(context_length: int, prompt_tokens: int, max_tokens: int | None, param: str) -> int:
    """The completion's token budget: max_tokens, clamped to the room the prompt leaves in the context.

    As llama-server, Ollama and LM Studio do, a max_tokens beyond the room generates until the context is
    full (finish reason "length"). An empty prompt, or one that alone fills the context, is a request
    error (every engine's).
    """
    if prompt_tokens == 0:
        raise InvalidRequestError("the prompt is empty", param="prompt")
    room = context_length - prompt_tokens
    if room <= 0:
        raise ContextLengthExceeded.of(context_length, prompt_tokens, 1, param)
    return room if max_tokens is None else min(max_tokens, room)


def check_token_ids(tokens: list[int], vocab_size: int, param: str) -> None:
    """400 naming `param` for a token id outside the vocabulary."""
    bad = next((t for t in tokens if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise InvalidRequestError(
            f"token id {bad} is outside the vocabulary (0..{vocab_size - 1})", param=param
        )


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
    # A custom (freeform) tool: its input is text, matching this Lark grammar when set (Responses' custom
    # tools). Offered to models as a function with one string argument, "input".
    custom: bool = False
    grammar: str | None = None


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
class ImageInput:
    """An image in a message. The schemas say where it came from (`source`: a data: URL or an http(s) URL,
    `param`: the request field); the HTTP layer then fetches and decodes it (api/images.py), filling in the
    encoded bytes (PNG or JPEG: other formats are re-encoded as PNG), the size and a hash of the bytes."""

    source: str
    param: str
    # The media type it declares must match its bytes (Anthropic's rule; OpenAI's APIs only read the bytes).
    strict_type: bool = False
    data: bytes = b""
    media_type: str = ""
    width: int = 0
    height: int = 0
    digest: str = ""  # sha256 of `data`, hex; set once resolved (prompt caches key images on it)

    @property
    def resolved(self) -> bool:
        return bool(self.digest)

    def data_url(self) -> str:
        """The image as a base64 data: URL (what llama.cpp's chat endpoint takes)."""
        import base64

        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass
class ChatMessage:
    """One message. Assistant messages may carry `tool_calls` (content then may be None);
    role "tool" messages answer the call named by `tool_call_id`."""

    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # An assistant turn's reasoning, sent back by the client (the template decides what to keep).
    reasoning: str | None = None
    # A message with images: its text parts and images in the order sent (`content` is the text parts
    # joined by newlines, for everything that reads text only). None: text only.
    parts: list[str | ImageInput] | None = None

    @property
    def images(self) -> list[ImageInput]:
        return [part for part in self.parts or [] if isinstance(part, ImageInput)]


def message_with_parts(role: str, parts: list[str | ImageInput]) -> ChatMessage:
    """A message from text parts and images in order (parts kept only when there are images)."""
    text = "\n".join(part for part in parts if isinstance(part, str))
    has_images = any(isinstance(part, ImageInput) for part in parts)
    return ChatMessage(role, text, parts=parts if has_images else None)


def request_images(request: GenerationRequest) -> list[ImageInput]:
    """Every image of a request's messages, in order."""
    return [image for message in request.messages or [] for image in message.images]


@dataclass(frozen=True)
class ReasoningFormat:
    """How a model marks its reasoning, and what closes it when the server ends it early."""

    name: str
    start: str
    end: str
    # Written after the reasoning when the server closes it (a budget ran out, or reasoning is off but
    # the template opened it): the end marker with the spacing the family writes.
    close: str
    harmony: bool = False
    # The model's default reasoning budget in tokens (models.toml reasoning_budget); None: unbounded.
    budget: int | None = None


@dataclass
class ReasoningOptions:
    """What a request asks of a reasoning model; None fields leave the model's own default."""

    # none/minimal/low/medium/high/xhigh/max (OpenAI's words); "none" turns reasoning off.
    effort: str | None = None
    # An explicit switch (Anthropic `thinking`, chat_template_kwargs.enable_thinking, Ollama `think`).
    enabled: bool | None = None
    # At most this many reasoning tokens; past it the server closes the reasoning and the answer follows.
    budget: int | None = None


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
    # Or a grammar in Lark (llguidance's dialect) the answer must match: a custom tool's forced input.
    grammar: str | None = None
    # A Lark grammar over everything the model writes, reasoning markup included (the `grammar` request
    # extension, llama-server's name for it); unlike the two above, it does not close the reasoning first.
    output_grammar: str | None = None
    # Report each token's logprob with this many alternatives (0..20); None: no logprobs.
    logprobs: int | None = None
    # Tool calling, handled engine-neutrally by generation/tools.py (runner.generate_until runs it):
    # any API family just fills these; chunks then carry parsed `tool_calls`, finish_reason "tool_calls".
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    # Set by the generation layer only: text the assistant's reply is made to start with (rendered after the
    # chat template's generation prompt, not part of the output), e.g. the model's tool-call marker, or the
    # reasoning so far and its end marker when a reasoning budget ran out.
    assistant_prefix: str = ""
    # Reasoning models: what the request asks (the runner maps it onto the template and the output).
    reasoning: ReasoningOptions = field(default_factory=ReasoningOptions)
    # Extra variables for the chat template (vLLM's and llama.cpp's chat_template_kwargs), e.g.
    # enable_thinking; the runner adds the reasoning switches the model's template understands.
    template_kwargs: dict[str, Any] = field(default_factory=dict)


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
    # Generated tokens this chunk covers (engines set it; reasoning budgets and counts are made of it).
    tokens: int = 0
    # Reasoning text (kept out of `text`, the answer), separated by generation/reasoning.py.
    reasoning: str = ""
    # Calls as they are being written: argument text streamed before the call completes.
    tool_call_deltas: list[ToolCallDelta] | None = None
    # On the last chunk: how many of completion_tokens were reasoning.
    reasoning_tokens: int = 0
    # Of prompt_tokens, the images' (on the first and last chunk, where the engine knows them).
    image_tokens: int = 0


@dataclass
class ToolCallDelta:
    """A piece of a call being written: the first of a call names it, later ones add argument text.

    The call's `tool_calls` entry still comes once, whole, when it completes; its arguments are exactly
    the concatenated deltas.
    """

    index: int  # the call's place among this reply's calls
    id: str
    name: str
    arguments: str


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass
class RerankResult:
    """One relevance score per document (the cross-encoder's first logit), in the documents' order."""

    scores: list[float]
    prompt_tokens: int


@dataclass
class Tokenized:
    """A text's token ids, and each token's bytes when asked for (a piece may be part of a character)."""

    ids: list[int]
    pieces: list[bytes] | None = None


class TextGenerator(Protocol):
    """What the generation layer drives: an engine as seen from here (engines/base.Engine is one)."""

    chat_template: str | None
    fim_template: str | None
    reasoning: ReasoningFormat | None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...

    async def detokenize(self, tokens: list[int]) -> str: ...
