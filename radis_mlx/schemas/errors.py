"""Every error body shape, once: OpenAI's (also the Responses API's), Anthropic's and Ollama's.

api/errors.py picks the shape by route and renders it for the app's handler, the guard middleware
and every mid-stream failure; nothing else builds an error body.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from radis_mlx.errors import ContextLengthExceeded, ModelNotFoundError, RadisError


class ErrorDetail(Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(Struct):
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""

    error: ErrorDetail

    @classmethod
    def of(cls, error: RadisError) -> ErrorResponse:
        return cls(ErrorDetail(error.message, error.type, error.param, error.code))


class AnthropicErrorDetail(Struct):
    type: str
    message: str


# Anthropic's error types by HTTP status.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class AnthropicErrorResponse(Struct):
    """Anthropic's error body (what /v1/messages* answer instead of OpenAI's)."""

    error: AnthropicErrorDetail
    type: Literal["error"] = "error"

    @classmethod
    def of(cls, error: RadisError) -> AnthropicErrorResponse:
        """{"type": "error", "error": {"type", "message"}}; the message names the field, as Anthropic's do."""
        status = error.status_code
        kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        if (
            isinstance(error, ContextLengthExceeded)
            and error.prompt is not None
            and error.context is not None
        ):
            # Anthropic's own words, which agent clients (Claude Code) match to compact the conversation.
            message = f"prompt is too long: {error.prompt} tokens > {error.context - 1} maximum"
        else:
            message = _named(error)
        return cls(AnthropicErrorDetail(kind, message))


class OllamaErrorResponse(Struct):
    """Ollama's error body (what its /api/* routes answer): {"error": "<message>"}, flat."""

    error: str

    @classmethod
    def of(cls, error: RadisError) -> OllamaErrorResponse:
        """Ollama's words for an unknown model (clients match "not found"); else the message, field first."""
        if isinstance(error, ModelNotFoundError):
            return cls(f"model '{error.model}' not found")
        return cls(_named(error))


def _named(error: RadisError) -> str:
    """The message, led by the field it is about where it does not name it already."""
    if error.param and error.param not in error.message:
        return f"{error.param}: {error.message}"
    return error.message
