"""Every failure a client can see, as one exception tree rendered by one handler.

RadisError                      status  type
├── InvalidRequestError           400   invalid_request_error
│   └── ContextLengthExceeded     400   invalid_request_error (code context_length_exceeded)
├── RequestTimeoutError           408   invalid_request_error (code timeout)
├── AuthenticationError           401   authentication_error
├── NotFoundError                 404   not_found_error (code model_not_found for models)
├── ConflictError                 409   invalid_request_error (code model_loaded: rm of a loaded model)
├── ModelLoadError                500   server_error (code model_load_failed)
│   ├── UnsupportedModelError     400   invalid_request_error (code unsupported_model)
│   └── ModelTooLargeError        507   server_error (code model_too_large: over the memory budget)
├── QueueFullError                429   rate_limit_error (code queue_full; Retry-After)
├── EngineError                   500   server_error
└── EngineUnavailableError        503   server_error (code engine_unavailable)
    └── QueueTimeoutError         503   server_error (code queue_timeout; Retry-After)

api/errors.py renders any of these in the wire family of the route (OpenAI's
`{"error": {"message", "type", "param", "code"}}`, Anthropic's `{"type": "error", "error": {...}}`,
Ollama's `{"error": "..."}`; schemas/errors.py holds the shapes), with the error's `headers`
(Retry-After on backpressure).
"""

from __future__ import annotations


class RadisError(Exception):
    """Base of every client-visible error; carries the OpenAI error fields."""

    status_code: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the error response carries."""
        return {}


class InvalidRequestError(RadisError):
    status_code = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequestError):
    code = "context_length_exceeded"
    # The window and the prompt's tokens, when known (Anthropic's wording needs them: api/errors.py).
    context: int | None = None
    prompt: int | None = None

    @classmethod
    def of(cls, context: int, prompt: int, completion: int, param: str) -> ContextLengthExceeded:
        """OpenAI's wording: the window, then what the request asked for, split by part."""
        error = cls(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the {param}, {completion} in the completion).",
            param=param,
        )
        error.context, error.prompt = context, prompt
        return error


class RequestTimeoutError(RadisError):
    status_code = 408
    type = "invalid_request_error"
    code = "timeout"


class AuthenticationError(RadisError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(RadisError):
    status_code = 404
    type = "not_found_error"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")
        self.model = model  # Ollama's wording names it: model 'x' not found


class ModelLoadError(RadisError):
    status_code = 500
    code = "model_load_failed"


class UnsupportedModelError(ModelLoadError):
    """The model's files are readable but use something no engine of ours runs."""

    status_code = 400
    type = "invalid_request_error"
    code = "unsupported_model"


class ModelTooLargeError(ModelLoadError):
    """The model's estimated bytes exceed the memory budget (alone, or beside pinned models)."""

    status_code = 507
    code = "model_too_large"

    def __init__(self, model: str, needed: int, available: int, *, beside: bool = False) -> None:
        gib = 1024**3
        where = "beside the pinned models" if beside else "in the memory budget"
        super().__init__(
            f"The model '{model}' needs about {needed / gib:.2f} GiB (weights + KV cache), more than the "
            f"{max(available, 0) / gib:.2f} GiB available {where}; raise [pool] memory_budget_gib or "
            "lower its context_length",
            param="model",
        )


class ConflictError(RadisError):
    status_code = 409
    type = "invalid_request_error"
    code = "model_loaded"


class EngineError(RadisError):
    status_code = 500
    code = "engine_error"


class EngineUnavailableError(RadisError):
    status_code = 503
    code = "engine_unavailable"


class QueueFullError(RadisError):
    """The model's wait queue is full; the client should come back after Retry-After."""

    status_code = 429
    type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, model: str, queued: int, retry_after: int) -> None:
        super().__init__(
            f"'{model}' is busy: {queued} requests are already waiting; retry after {retry_after} s",
            param="model",
        )
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class QueueTimeoutError(EngineUnavailableError):
    """A request waited in the model's queue longer than its queue_timeout."""

    code = "queue_timeout"

    def __init__(self, model: str, timeout: float, retry_after: int) -> None:
        super().__init__(
            f"'{model}' stayed busy: the request waited {timeout:g} s in its queue; "
            f"retry after {retry_after} s"
        )
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}
