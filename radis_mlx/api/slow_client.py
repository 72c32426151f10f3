"""A client that stops reading is disconnected, so it cannot hold its model's slot forever.

uvicorn waits without limit for a socket whose buffers are full; a stream's lease (its place in the
model's queue, its batch slot) is released only after its last byte is sent. Every send must make
progress within `timeout` seconds: otherwise the connection is aborted (its unsent bytes dropped),
which the response sees as a client disconnect (the stream is closed, its generation cancelled).
It wraps the whole app (`radis-mlx serve` puts it around create_app's), so the send it gets is the
server's own, whose connection it can abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class SendTimeoutMiddleware:
    """Bounds every ASGI send of an HTTP response by `timeout` seconds, and what the server buffers
    of a response its client does not read by `buffer` bytes (beyond the kernel's)."""

    def __init__(self, app: ASGIApp, *, timeout: float, buffer: int = 64 * 1024) -> None:
        self.app = app
        self.timeout = timeout
        self.buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        aborted = False

        async def sending(message: Message) -> None:
            nonlocal aborted
            if aborted:
                return  # the connection is gone; the app hears of it through receive()
            if message["type"] == "http.response.start":
                transport = _transport(send)
                if transport is not None and hasattr(transport, "set_write_buffer_limits"):
                    transport.set_write_buffer_limits(high=self.buffer)  # sends wait beyond this
            try:
                await _within(send(message), self.timeout)
            except asyncio.TimeoutError:
                aborted = True
                log.warning(
                    "%s %s: the client read nothing for %gs; disconnecting it",
                    scope.get("method"),
                    scope.get("path"),
                    self.timeout,
                )
                # Under another server the rest of the response is dropped until the app ends.
                _abort(send)

        await self.app(scope, receive, sending)


def _transport(send: Send) -> Any:
    """The connection behind the server's `send` (uvicorn's request cycle holds it), or None."""
    return getattr(getattr(send, "__self__", None), "transport", None)


def _abort(send: Send) -> None:
    transport = _transport(send)
    if transport is None or not hasattr(transport, "abort"):
        return
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        # A reset, not a FIN queued behind the unread bytes: the kernel drops them at once too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


if sys.version_info >= (3, 11):

    async def _within(sending: Any, timeout: float) -> None:
        # A timer on this task, where wait_for would start a task per send (per token when streaming).
        async with asyncio.timeout(timeout):
            await sending

else:

    async def _within(sending: Any, timeout: float) -> None:
        await asyncio.wait_for(sending, timeout)
