"""Guards for a server on a user's machine: API keys, browser attacks on loopback, body size.

One ASGI middleware checks, in order: the Host header (DNS rebinding, while bound to loopback),
the content type of POST bodies (a web page's form or text/plain request cannot start work), and
the API key (constant-time, `Authorization: Bearer` or `x-api-key`). /health stays open.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any, cast

from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from radis_mlx.api.errors import encode, family_of
from radis_mlx.errors import AuthenticationError, InvalidRequestError, RadisError

# The dashboard page and its assets hold no secrets: they load without a key, then ask for it.
OPEN_PATHS = ("/health", "/")
OPEN_PREFIXES = ("/dashboard/",)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


class UnsupportedMediaTypeError(InvalidRequestError):
    status_code = 415
    code = "unsupported_media_type"


class ForbiddenHostError(RadisError):
    status_code = 403
    type = "permission_error"
    code = "forbidden_host"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header: 'localhost:1234' → 'localhost', '[::1]:80' → '[::1]'."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class GuardMiddleware:
    """Refuses requests that fail the host, content-type or API-key checks, OpenAI-shaped."""

    def __init__(self, app: ASGIApp, *, api_keys: Iterable[str], allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.api_keys = [key.encode() for key in api_keys if key]
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check(cast(HTTPScope, scope))
        except RadisError as error:
            await _send_error(send, error, scope["path"])
            return
        await self.app(scope, receive, send)

    def _check(self, scope: HTTPScope) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed_hosts is not None:
            name = host_name(headers.get("host", "")).lower()
            if name not in self.allowed_hosts:
                raise ForbiddenHostError(
                    f"Host '{name}' is not allowed; this server answers to localhost only"
                )
        path = scope["path"]
        if scope["method"] == "POST":
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise UnsupportedMediaTypeError("request bodies must be sent as application/json")
        is_open = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if self.api_keys and scope["method"] != "OPTIONS" and not is_open:
            offered = _offered_key(headers)
            # Compare against every key so timing does not reveal which one nearly matched.
            matches = [hmac.compare_digest(offered, key) for key in self.api_keys]
            if not any(matches):
                raise AuthenticationError(
                    "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'."
                )


def _offered_key(headers: dict[str, str]) -> bytes:
    # The header's raw bytes (decoded as latin-1 above): a UTF-8 key then matches its UTF-8 encoding.
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[len("bearer ") :].strip().encode("latin-1")
    return headers.get("x-api-key", "").strip().encode("latin-1")


async def _send_error(send: Send, error: RadisError, path: str) -> None:
    body = encode(error, family_of(path))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(error, AuthenticationError):
        headers.append((b"www-authenticate", b"Bearer"))
    start: Any = {"type": "http.response.start", "status": error.status_code, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
