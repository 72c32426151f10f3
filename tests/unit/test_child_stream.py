"""engines/child/stream.py against a loopback server that answers with canned bytes, on both event
loops radis-mlx runs on (uvicorn picks uvloop when it is installed)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from radis_mlx.engines.child.engine import ChildEngine
from radis_mlx.engines.child.stream import ChildConnectionError, post_stream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    return asyncio.run if request.param == "asyncio" else uvloop.run  # type: ignore[return-value]


async def _serve(handler: Handler, scenario: Callable[[int], Awaitable[Any]]) -> Any:
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        return await asyncio.wait_for(scenario(server.sockets[0].getsockname()[1]), 10)
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
    )
    return head + await reader.readexactly(length)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_chunked_stream_arrives_line_by_line(run: Callable[[Awaitable[Any]], Any]) -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await _read_request(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # an event split across chunks and writes, two events in one chunk
        for piece in (b'data: {"a"', b": 1}\n\n", b"data: 2\n\ndata: 3\n\n"):
            writer.write(_chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def scenario(port: int) -> tuple[int, list[bytes]]:
        async with await post_stream(port, "/v1/chat/completions", b'{"x": 1}') as response:
            return response.status, [line async for line in response.lines()]

    status, lines = run(_serve(handler, scenario))
    assert status == 200
    assert lines == [b'data: {"a": 1}', b"data: 2", b"data: 3"]
    head, body = requests[0].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Content-Type: application/json" in head
    assert body == b'{"x": 1}'


def test_an_error_reply_is_read_whole(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        body = b'{"error": {"message": "bad"}}'
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async def scenario(port: int) -> tuple[int, bytes]:
        async with await post_stream(port, "/completion", b"{}") as response:
            return response.status, await response.read()

    assert run(_serve(handler, scenario)) == (400, b'{"error": {"message": "bad"}}')


def test_a_child_that_dies_mid_stream_is_a_connection_error(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(b"data: 1\n\n"))
        await writer.drain()
        writer.transport.abort()

    async def scenario(port: int) -> list[bytes]:
        seen: list[bytes] = []
        async with await post_stream(port, "/completion", b"{}") as response:
            with pytest.raises(ChildConnectionError, match="mid-response"):
                async for line in response.lines():
                    seen.append(line)
        return seen

    assert run(_serve(handler, scenario)) == [b"data: 1"]


def test_no_child_or_no_http_is_a_connection_error(run: Callable[[Awaitable[Any]], Any]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    async def refused() -> None:
        with pytest.raises(ChildConnectionError, match="cannot connect"):
            await post_stream(closed_port, "/completion", b"{}")

    run(refused())

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-not-http\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def scenario(port: int) -> None:
        with pytest.raises(ChildConnectionError, match="not HTTP"):
            async with await post_stream(port, "/completion", b"{}"):
                pass

    run(_serve(handler, scenario))

    async def bad_chunking(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(b"data: 1\n\n"))
        writer.write(b"zz-not-a-chunk-size\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def mid_body(port: int) -> None:
        async with await post_stream(port, "/completion", b"{}") as response:
            # the parse error, not the connection_lost that closing after it causes
            with pytest.raises(ChildConnectionError, match="not HTTP"):
                async for _ in response.lines():
                    pass

    run(_serve(bad_chunking, mid_body))


def test_leaving_early_closes_the_connection(run: Callable[[Awaitable[Any]], Any]) -> None:
    """A client that disconnects must stop the child's generation: the child sees the socket close."""
    child_saw_eof = asyncio.Event

    async def scenario_with_server() -> bool:
        eof = child_saw_eof()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(b"data: 1\n\n"))
            await writer.drain()
            if await reader.read(1) == b"":
                eof.set()

        async def scenario(port: int) -> bool:
            async with await post_stream(port, "/completion", b"{}") as response:
                async for _ in response.lines():
                    break  # the request ends after its first event
            await asyncio.wait_for(eof.wait(), 5)
            return eof.is_set()

        return bool(await _serve(handler, scenario))

    assert run(scenario_with_server())


def test_an_engine_opens_no_more_streams_than_its_childs_slots(run: Callable[[Awaitable[Any]], Any]) -> None:
    """Many generations at once wait for a free connection: the child never sees more than its slots,
    and each request carries the child's secret."""
    open_now, most, heads = 0, 0, []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        heads.append(await _read_request(reader))
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        open_now -= 1

    class Child(ChildEngine):
        async def start(self) -> None: ...

        async def generate(self, request: Any) -> Any: ...

    async def scenario(port: int) -> list[bytes]:
        engine = Child("fake child", connections=3)
        engine.child.port = port
        engine.child.process = type("Alive", (), {"returncode": None, "pid": 1})()  # type: ignore[assignment]

        async def one() -> bytes:
            async with engine._post_stream("/completion", b"{}") as response:
                return await response.read()

        return await asyncio.gather(*(one() for _ in range(20)))

    assert run(_serve(handler, scenario)) == [b"ok"] * 20
    assert most == 3
    assert all(b"Authorization: Bearer " in head for head in heads)
