"""The part every engine served by a supervised child shares: its HTTP client and its death.

llama.cpp children and distributed MLX groups are both servers on a loopback port; a request that
finds the child gone (or loses it mid-stream) is a 503, and the pool hears of the death at once even
when the exit watcher has not run yet, so the model is marked unloaded and restarts on next use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from radis_mlx.engines.base import Engine
from radis_mlx.engines.child.stream import ChildResponse, post_stream
from radis_mlx.engines.child.supervisor import ChildProcess
from radis_mlx.errors import EngineUnavailableError


class ChildEngine(Engine):
    """An engine whose model lives in `self.child`: generations stream through `_post_stream`, the
    rest (health, metadata, embeddings, tokens) goes through the httpx client `self._client`."""

    # Set by the pool: called when the child dies on its own, so the model is marked unloaded.
    on_exit: Callable[[], None] | None = None
    model_id: str
    # What the 503 calls the child: "the llama.cpp process", "the distributed group".
    child_noun = "the child process"

    def __init__(
        self, child_name: str, *, process_group: bool = False, stdin_pipe: bool = False, connections: int = 4
    ) -> None:
        self.child = ChildProcess(
            child_name, on_exit=self._child_exited, process_group=process_group, stdin_pipe=stdin_pipe
        )
        self._client: httpx.AsyncClient | None = None
        # Streams open to the child at once (its slots): 1 500 prompts must not open 1 500 sockets.
        self._streams = asyncio.Semaphore(connections)

    def _new_client(self, timeout: httpx.Timeout, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
        """The httpx client for the child's other calls: its secret, never a proxy from the environment."""
        return httpx.AsyncClient(
            base_url=self.child.base_url,
            headers=self.child.auth_headers,
            trust_env=False,
            timeout=timeout,
            limits=limits or httpx.Limits(),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        await self.child.stop()

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None or not self.child.alive:
            raise self._unavailable(None)
        return self._client

    @asynccontextmanager
    async def _post_stream(self, path: str, body: bytes) -> AsyncIterator[ChildResponse]:
        """A streamed POST to the child (the per-token hop), waiting for a free connection first."""
        async with self._streams:
            if not self.child.alive:
                raise self._unavailable(None)
            async with await post_stream(self.child.port, path, body, self.child.secret) as response:
                yield response

    def _unavailable(self, exc: BaseException | None) -> EngineUnavailableError:
        if not self.child.alive and self.on_exit is not None:
            self.on_exit()  # the watcher may not have run yet; the pool must still hear of it
        detail = f" ({type(exc).__name__})" if exc else ""
        return EngineUnavailableError(
            f"{self.child_noun} serving '{self.model_id}' stopped{detail}; it restarts on the next request"
        )

    def _child_exited(self, code: int, stderr_tail: str) -> None:
        if self.on_exit is not None:
            self.on_exit()
