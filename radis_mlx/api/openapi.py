"""Complete Litestar's OpenAPI document with what it cannot see.

Handlers decode their bodies themselves (strict msgspec, precise error paths), so Litestar does
not know the request schemas: each POST handler names its request Struct in `opt["request"]`, and
this module adds those schemas (from msgspec), the SSE (or, for Ollama's routes, NDJSON: `opt["ndjson"]`)
alternative of streaming endpoints, and the error responses (OpenAI's unless `opt["error"]`) to every
operation.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.routes import HTTPRoute

from radis_mlx.schemas.errors import ErrorResponse

_REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "Invalid request (OpenAI error body; `param` names the field)",
    "401": "Missing or wrong API key",
    "403": "Host not allowed",
    "404": "Unknown model or route",
    "409": "Model is loaded (delete)",
    "413": "Request body too large",
    "415": "Request body is not application/json",
    "500": "Engine or model load failure",
    "503": "Engine unavailable",
    "507": "Model too large for the memory budget (code model_too_large)",
}


def document(app: Litestar) -> None:
    """Add request bodies, SSE responses and error responses to app.openapi_schema (in place)."""
    spec = app.openapi_schema
    requests: dict[tuple[str, str], type[msgspec.Struct]] = {}
    events: dict[str, type[msgspec.Struct]] = {}  # path → the Struct each SSE event carries
    lines: dict[str, type[msgspec.Struct]] = {}  # path → the Struct each NDJSON line carries
    errors: dict[str, type[msgspec.Struct]] = {}  # path → its error body, where not OpenAI's
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if request := handler.opt.get("request"):
                path = route.path_format
                requests.update({(path, method.lower()): request for method in handler.http_methods})
            if event := handler.opt.get("sse"):
                events[route.path_format] = event
            if chunk := handler.opt.get("ndjson"):
                lines[route.path_format] = chunk
            if error_body := handler.opt.get("error"):
                errors[route.path_format] = error_body
    structs = [*requests.values(), *events.values(), *lines.values(), *errors.values(), ErrorResponse]
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    schemas = spec.components.schemas if spec.components and spec.components.schemas is not None else {}
    schemas.update(components)
    for path, item in (spec.paths or {}).items():
        for method in ("get", "post", "delete"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.responses or {}
            body = _error_body(errors.get(path, ErrorResponse))
            responses.update({code: {"description": text, **body} for code, text in _ERRORS.items()})
            if request := requests.get((path, method)):
                _document_request(operation, request, responses, ndjson=lines.get(path))
            if event := events.get(path):
                content = {"text/event-stream": {"schema": _sse_event(f"{{{event.__name__}}}")}}
                responses["200"] = {"description": f"Server-sent {event.__name__} events", "content": content}
            operation.responses = responses


def _sse_event(data: str) -> dict[str, Any]:
    """One server-sent event, as SSE parsers (and schemathesis) read it: its `data` line is JSON text."""
    return {
        "type": "object",
        "properties": {
            "data": {"type": "string", "description": f"{data} as JSON; the last event is [DONE]"},
            "event": {"type": "string"},
        },
        "required": ["data"],
    }


def _error_body(struct: type[msgspec.Struct]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _REF.format(name=struct.__name__)}}}}


def _document_request(
    operation: Any,
    request: type[msgspec.Struct],
    responses: dict[str, Any],
    ndjson: type[msgspec.Struct] | None = None,
) -> None:
    body = {"$ref": _REF.format(name=request.__name__)}
    operation.request_body = {"required": True, "content": {"application/json": {"schema": body}}}
    ok = responses.get("200")
    content = getattr(ok, "content", None) or {}
    json_media = content.get("application/json")
    schema = getattr(json_media, "schema", None)
    # `Model | Stream` renders as oneOf [Model, {}]: keep the model, document the stream as SSE or NDJSON.
    one_of = getattr(schema, "one_of", None)
    if one_of and json_media is not None:
        json_media.schema = next(s for s in one_of if getattr(s, "ref", None))
        if ndjson is not None:  # one JSON object per line
            content["application/x-ndjson"] = {"schema": {"$ref": _REF.format(name=ndjson.__name__)}}
        else:
            content["text/event-stream"] = {"schema": _sse_event("{chunk}")}
