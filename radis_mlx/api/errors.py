"""Errors on the wire: one renderer per wire family, for every path an error can take.

The app's exception handler, the guard middleware and every stream that fails after its response
started all come here. The family is the route's: Anthropic's shape on /v1/messages*, Ollama's on
/api/* (but /api/v0/*, our management API), OpenAI's everywhere else (the Responses API frames
OpenAI's fields as its own `error` event).
"""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from radis_mlx.api import metrics
from radis_mlx.errors import EngineError, RadisError
from radis_mlx.schemas.errors import AnthropicErrorResponse, ErrorResponse, OllamaErrorResponse

log = logging.getLogger(__name__)

Family = Literal["openai", "anthropic", "ollama"]
ANTHROPIC_PREFIX = "/v1/messages"
OLLAMA_PREFIX = "/api/"
MANAGEMENT_PREFIX = "/api/v0/"  # LM Studio's paths, ours: OpenAI's error shape
_encoder = msgspec.json.Encoder()


def family_of(path: str) -> Family:
    """The wire family a route answers in."""
    if path.startswith(ANTHROPIC_PREFIX):
        return "anthropic"
    if path.startswith(OLLAMA_PREFIX) and not (path + "/").startswith(MANAGEMENT_PREFIX):
        return "ollama"
    return "openai"


def error_body(
    error: RadisError, family: Family
) -> ErrorResponse | AnthropicErrorResponse | OllamaErrorResponse:
    """The error's body in a family's shape."""
    if family == "anthropic":
        return AnthropicErrorResponse.of(error)
    if family == "ollama":
        return OllamaErrorResponse.of(error)
    return ErrorResponse.of(error)


def encode(error: RadisError, family: Family) -> bytes:
    """The JSON bytes of the error's body."""
    return _encoder.encode(error_body(error, family))


def stream_failure(exc: BaseException) -> RadisError:
    """What a stream that failed after its start reports: the error as the client sees it.

    Stray exceptions are logged with their traceback and become an EngineError; every failure is
    counted as a failed request (api/metrics.py).
    """
    metrics.count_failure()
    if isinstance(exc, RadisError):
        return exc
    log.error("generation failed mid-stream", exc_info=exc)
    return EngineError(f"generation failed: {type(exc).__name__}: {exc}")


def sse_error(exc: BaseException) -> bytes:
    """The OpenAI error event a chat, completions or pull stream ends with."""
    return b"data: " + encode(stream_failure(exc), "openai") + b"\n\n"


def ndjson_error(exc: BaseException) -> bytes:
    """The `{"error": "..."}` line an Ollama NDJSON stream ends with (the status stays 200, as Ollama's)."""
    return encode(stream_failure(exc), "ollama") + b"\n"
