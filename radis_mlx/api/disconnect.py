"""Cancel an inference request whose client disconnects before its response starts.

Litestar notices a disconnect only while it streams a response; a non-streaming generation (or a
stream still waiting for its first token, or a request queued for its model) would otherwise run
to its end and hold its batch slot. Once the body is read, a watcher awaits the next ASGI message;
http.disconnect cancels the handler, whose cleanup (generator aclose → Emitter.cancel) frees the slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from radis_mlx.api.metrics import is_inference

log = logging.getLogger(__name__)


class DisconnectMiddleware:
    """Watches inference requests (metrics.is_inference) for a client leaving before the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = cast(HTTPScope, scope)
        if scope["type"] != "http" or not is_inference(http):
            await self.app(scope, receive, send)
            return
        watcher: asyncio.Task[ReceiveMessage] | None = None
        disconnected = False

        async def watch() -> ReceiveMessage:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                handler.cancel()
            return message

        async def receiving() -> ReceiveMessage:
            nonlocal watcher
            if watcher is not None:  # the app reads on (e.g. Litestar's own disconnect listener)
                message = await asyncio.shield(watcher)
                watcher = None
                return message
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.ensure_future(watch())
            return message

        async def sending(message: Message) -> None:
            nonlocal watcher
            if message["type"] == "http.response.start" and watcher is not None and not watcher.done():
                watcher.cancel()  # the response is under way: Litestar's own handling takes over
                watcher = None
            await send(message)

        # Its own task, so the watcher can cancel the request alone (a cancel of ours reaches it too).
        handler = asyncio.ensure_future(self.app(scope, receiving, sending))
        try:
            await handler
        except asyncio.CancelledError:
            if not disconnected:
                raise
            log.info("client disconnected from %s; its request was cancelled", http["path"])
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
