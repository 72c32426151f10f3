"""One streamed POST to a child server on loopback, its response parsed by llhttp (httptools).

This is the per-token hop of every engine that runs in a child (llama.cpp, distributed MLX): each
token crosses it once. httpx spends ~0.3 ms of CPU per streamed chunk on its layers (anyio, h11,
a timeout scope per read) — measured at 0.32 ms against 0.10 ms here — and on a 2-core machine
whose cores run llama.cpp's threads that CPU comes out of decoding. The request is always one
POST with a JSON body on a fresh connection, closed afterwards (llama.cpp's server drops a request
on a connection reused after a stream), so what is left to write is small: the parser is the one
uvicorn uses.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from types import TracebackType
from typing import cast

import httptools

CONNECT_TIMEOUT = 30.0
# Pieces buffered before the socket stops being read (a client reading slower than the child writes).
_HIGH_WATER = 256


class ChildConnectionError(ConnectionError):
    """The child refused the connection, closed it mid-response, or sent what is not HTTP."""


class ChildResponse(asyncio.Protocol):
    """The response to one POST: `status`, then the body's pieces as they arrive (`async for`)."""

    def __init__(self) -> None:
        self.status = 0
        self._parser = httptools.HttpResponseParser(self)
        self._pieces: collections.deque[bytes] = collections.deque()
        self._headers_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeup: asyncio.Future[None] | None = None
        self._done = False
        self._error: ChildConnectionError | None = None
        self._transport: asyncio.Transport | None = None
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, though they are one
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ChildConnectionError(f"the child's response is not HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._fail(ChildConnectionError(f"the child closed the connection mid-response ({exc})"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self._headers_done.done():
            self._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        if len(self._pieces) >= _HIGH_WATER and self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def on_message_complete(self) -> None:
        self._done = True
        self._wake()

    # what the engine uses
    async def __aenter__(self) -> ChildResponse:
        try:
            await self._headers_done
        except BaseException:  # cancelled (the client left) or refused: the child must not go on
            self.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection: a generation the child is still running stops with it."""
        if self._transport is not None:
            self._transport.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            while self._pieces:
                yield self._pieces.popleft()
            if self._paused and self._transport is not None:
                self._transport.resume_reading()
                self._paused = False
            if self._done:
                return
            if self._error is not None:
                raise self._error
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup

    async def lines(self) -> AsyncIterator[bytes]:
        """The body's non-empty lines (SSE events, JSON lines) as they complete."""
        pending = b""
        async for piece in self:
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line:
                    yield line
        if pending:
            yield pending

    async def read(self) -> bytes:
        """The whole body (an error reply)."""
        return b"".join([piece async for piece in self])

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _fail(self, error: ChildConnectionError) -> None:
        if self._error is not None:
            return  # the first cause stands: closing after a parse error also ends in connection_lost
        self._error = error
        if not self._headers_done.done():
            self._headers_done.set_exception(error)
        self._wake()


async def post_stream(port: int, path: str, body: bytes, secret: str = "") -> ChildResponse:
    """Send `body` as a JSON POST to 127.0.0.1:`port` (with the child's secret); use the result with
    `async with`."""
    loop = asyncio.get_running_loop()
    try:
        connecting = loop.create_connection(ChildResponse, "127.0.0.1", port)
        transport, response = await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise ChildConnectionError(f"cannot connect to the child on port {port}: {exc}") from exc
    auth = f"Authorization: Bearer {secret}\r\n" if secret else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
    )
    transport.write(head.encode() + body)
    return response
