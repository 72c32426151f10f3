"""llama.cpp's wire format: the JSON its server speaks, decoded into our plain types.

The only place that knows llama.cpp's field names: request bodies for sampling, the streamed events
of /completion and /v1/chat/completions, /v1/models metadata, and its error bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from radis_mlx.errors import (
    ContextLengthExceeded,
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
    RadisError,
)
from radis_mlx.generation.grammar import constraint_lark
from radis_mlx.generation.types import SamplingParams, Tokenized, TokenLogprob

# mlx-lm's penalties look at the last 20 tokens; llama.cpp's window is repeat_last_n.
PENALTY_WINDOW = 20
_FINISH = {"eos": "stop", "word": "stop", "limit": "length"}


class _Progress(msgspec.Struct):
    total: int = 0
    cache: int = 0  # of total, reused from the slot's KV cache


class _TopProb(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int]


class _TokenProb(_TopProb):
    """One token's probabilities, the same on both endpoints (n_probs / logprobs + top_logprobs)."""

    top_logprobs: list[_TopProb] = []


class _Timings(msgspec.Struct):
    cache_n: int = 0  # prompt tokens whose KV the slot reused (cache_prompt)


class _Chunk(msgspec.Struct):
    """One streamed /completion event (llama.cpp sends many more fields; we skip them)."""

    content: str = ""
    completion_probabilities: list[_TokenProb] = []
    stop: bool = False
    stop_type: str = ""
    tokens_predicted: int = 0
    tokens_evaluated: int = 0
    prompt_progress: _Progress | None = None
    timings: _Timings | None = None


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChoiceLogprobs(msgspec.Struct):
    content: list[_TokenProb] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta
    finish_reason: str | None = None
    logprobs: _ChoiceLogprobs | None = None


class _Details(msgspec.Struct):
    cached_tokens: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_details: _Details | None = None


class _ChatChunk(msgspec.Struct):
    """One streamed /v1/chat/completions event; with include_usage the last one carries the counts."""

    choices: list[_Choice] = []
    usage: _Usage | None = None
    prompt_progress: _Progress | None = None
    timings: _Timings | None = None


@dataclass
class Event:
    """Either endpoint's event, normalized: `usage` (prompt, completion) marks the last one."""

    text: str
    finish: str | None = None
    usage: tuple[int, int] | None = None
    prompt_total: int | None = None
    logprobs: list[TokenLogprob] | None = None
    cached: int = 0  # of the prompt tokens, reused from the slot's KV cache (cache_prompt)
    token: bool = True  # it carries a generated token (not only the prompt's progress)


def completion_event(data: bytes) -> Event:
    chunk = msgspec.json.decode(data, type=_Chunk)
    progress = chunk.prompt_progress
    total = progress.total if progress else chunk.tokens_evaluated
    logprobs = _logprobs(chunk.completion_probabilities)
    if not chunk.stop:
        token = progress is None or bool(chunk.content or logprobs)
        return Event(
            chunk.content,
            prompt_total=total,
            logprobs=logprobs,
            cached=progress.cache if progress else 0,
            token=token,
        )
    usage = (chunk.tokens_evaluated, chunk.tokens_predicted)
    cached = chunk.timings.cache_n if chunk.timings else 0
    return Event(chunk.content, _FINISH.get(chunk.stop_type, "stop"), usage, total, logprobs, cached)


def chat_event(data: bytes) -> Event:
    chunk = msgspec.json.decode(data, type=_ChatChunk)
    choice = chunk.choices[0] if chunk.choices else None
    usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) if chunk.usage else None
    text = (choice.delta.content or "") if choice else ""
    logprobs = _logprobs(choice.logprobs.content or []) if choice and choice.logprobs else []
    progress = chunk.prompt_progress
    return Event(
        text,
        choice.finish_reason if choice else None,
        usage,
        progress.total if progress else None,
        logprobs,
        _cached(chunk) or (progress.cache if progress else 0),
        token=bool(text or logprobs),
    )


def _cached(chunk: _ChatChunk) -> int:
    details = chunk.usage.prompt_tokens_details if chunk.usage else None
    if details is not None:
        return details.cached_tokens
    return chunk.timings.cache_n if chunk.timings else 0


def _logprobs(probs: list[_TokenProb]) -> list[TokenLogprob]:
    return [
        TokenLogprob(p.token, p.logprob, bytes(p.bytes), [_top(t) for t in p.top_logprobs]) for p in probs
    ]


def _top(prob: _TopProb) -> TokenLogprob:
    return TokenLogprob(prob.token, prob.logprob, bytes(prob.bytes))


def constraint_body(
    json_schema: dict[str, Any] | None,
    logprobs: int | None,
    chat: bool,
    llguidance: bool = True,
    grammar: str | None = None,
) -> dict[str, Any]:
    """The schema (or Lark grammar) and logprob options in each endpoint's names (llama.cpp sends no
    probs for 0)."""
    body: dict[str, Any] = {}
    if (json_schema is not None or grammar is not None) and llguidance:
        # llguidance in the child as on MLX, not llama.cpp's own schema grammar (whitespace allowed
        # between all tokens, which a small model fills until max_tokens): both engines write the same JSON.
        body["grammar"] = constraint_lark(json_schema, grammar)
    elif grammar is not None:
        raise InvalidRequestError(
            "grammar constraints need llama.cpp built with llguidance (the xllamacpp wheel)", param="tools"
        )
    elif json_schema is not None:
        if chat:
            body["response_format"] = {"type": "json_schema", "json_schema": {"schema": json_schema}}
        else:
            body["json_schema"] = json_schema
    if logprobs is not None:
        body.update(
            {"logprobs": True, "top_logprobs": max(logprobs, 1)} if chat else {"n_probs": max(logprobs, 1)}
        )
    return body


class _Meta(msgspec.Struct):
    n_vocab: int
    n_ctx: int
    n_ctx_train: int
    size: int = 0


class _ModelCard(msgspec.Struct):
    meta: _Meta


class Models(msgspec.Struct):
    data: list[_ModelCard]


class _ErrorBody(msgspec.Struct):
    message: str = ""
    type: str = ""
    n_prompt_tokens: int = 0
    n_ctx: int = 0


class _Error(msgspec.Struct):
    error: _ErrorBody


def sampling_body(params: SamplingParams) -> dict[str, Any]:
    """Our sampling fields in llama.cpp's names; samplers we do not expose are switched off."""
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "min_p": params.min_p,
        "typical_p": 1.0,
        "dry_multiplier": 0.0,
        "xtc_probability": 0.0,
        "seed": -1 if params.seed is None else params.seed,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "repeat_penalty": params.repetition_penalty,
        "repeat_last_n": PENALTY_WINDOW,
        "logit_bias": [[token, bias] for token, bias in params.logit_bias.items()],
    }


def child_error(status: int, content: bytes, param: str) -> RadisError:
    """llama.cpp's error body as one of ours."""
    try:
        error = msgspec.json.decode(content, type=_Error).error
    except msgspec.DecodeError:
        error = _ErrorBody(message=content.decode(errors="replace")[:500])
    if error.type == "exceed_context_size_error":
        return ContextLengthExceeded.of(error.n_ctx, error.n_prompt_tokens, 0, param)
    if "invalid token" in error.message.lower():
        return InvalidRequestError(error.message, param="prompt")
    if "json schema" in error.message.lower():
        return InvalidRequestError(f"llama.cpp rejected the schema: {error.message}", param="response_format")
    if status == 503:
        return EngineUnavailableError(f"llama.cpp is not ready: {error.message}")
    if 400 <= status < 500:
        return InvalidRequestError(f"llama.cpp rejected the request: {error.message}", param=param)
    return EngineError(f"llama.cpp failed: {error.message}")


class _Vector(msgspec.Struct):
    embedding: list[float]
    index: int


class _Embeddings(msgspec.Struct):
    data: list[_Vector]


def embeddings_body(sequences: list[list[int]], normalize: bool) -> bytes:
    """/v1/embeddings for token-id lists (llama.cpp adds no special tokens to ids); 2: L2, -1: raw."""
    body = {"input": sequences, "encoding_format": "float", "embd_normalize": 2 if normalize else -1}
    return msgspec.json.encode(body)


def embedding_vectors(content: bytes, count: int) -> list[list[float]]:
    """The reply's vectors in input order."""
    data = sorted(msgspec.json.decode(content, type=_Embeddings).data, key=lambda v: v.index)
    if len(data) != count:
        raise EngineError(f"llama.cpp returned {len(data)} embeddings for {count} inputs")
    return [v.embedding for v in data]


class _Piece(msgspec.Struct):
    id: int
    piece: str | list[int]


class _TokensWithPieces(msgspec.Struct):
    tokens: list[_Piece]


class _Tokens(msgspec.Struct):
    tokens: list[int]


def tokenize_body(text: str, add_special: bool, with_pieces: bool) -> dict[str, Any]:
    """/tokenize: special tokens in the text are parsed, as in a prompt."""
    return {"content": text, "add_special": add_special, "parse_special": True, "with_pieces": with_pieces}


def tokenized(content: bytes, with_pieces: bool) -> Tokenized:
    """/tokenize's reply: ids, and each piece's bytes (llama.cpp sends a non-UTF-8 piece as byte values)."""
    if not with_pieces:
        return Tokenized(msgspec.json.decode(content, type=_Tokens).tokens)
    tokens = msgspec.json.decode(content, type=_TokensWithPieces).tokens
    pieces = [t.piece.encode() if isinstance(t.piece, str) else bytes(t.piece) for t in tokens]
    return Tokenized([t.id for t in tokens], pieces)
