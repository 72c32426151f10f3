"""Child-process lifecycle for engines that run as servers: start, health, death, stop.

A child gets a free loopback port, a start deadline and health polling that notices early death
(with the tail of its stderr in the error). Once up, a watcher reports an unexpected exit through
`on_exit`. Stopping is terminate → wait → kill, so no child outlives its engine.

Each child also gets a random secret that only this process knows: the engine hands it over by the
environment or the stdin pipe (never argv, which `ps` shows), the child refuses requests without it,
and `auth_headers` carries it. Anyone else who finds the port reaches nothing but /health.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Callable, Sequence

import httpx

from radis_mlx.errors import ModelLoadError

log = logging.getLogger(__name__)

_PORT_IN_USE = re.compile(r"address already in use|couldn't bind|could not bind|failed to bind", re.I)


def free_port() -> int:
    """A loopback port nobody listens on right now (a child may still lose the race: we retry)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildProcess:
    """One supervised child serving HTTP on 127.0.0.1:port."""

    def __init__(
        self,
        name: str,
        on_exit: Callable[[int, str], None] | None = None,
        *,
        process_group: bool = False,
        stdin_pipe: bool = False,
    ) -> None:
        self.name = name
        self.on_exit = on_exit
        # A child that starts children of its own (mlx.launch and its ranks) gets its own process group,
        # and every signal goes to the whole group, so none of them outlives the engine.
        self.process_group = process_group
        # A pipe we hold open instead of /dev/null (always readable: a child polling its stdin would spin).
        self.stdin_pipe = stdin_pipe
        self.port = 0
        self.secret = secrets.token_urlsafe(32)
        self.process: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """What a request to the child carries so the child serves it."""
        return {"Authorization": f"Bearer {self.secret}"}

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote to stderr."""
        return "\n".join(list(self._stderr)[-lines:])

    async def start(
        self,
        argv_for_port: Callable[[int], Sequence[str]],
        *,
        timeout: float,
        attempts: int = 3,
        secret_env: str | None = None,
    ) -> None:
        """Start the child and wait until /health answers; retry on a port collision.

        The secret goes to the child in the environment variable `secret_env`, or else (with
        stdin_pipe) as the first line on its stdin.
        """
        env = {**os.environ, secret_env: self.secret} if secret_env else None
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            try:
                await self._start_once(list(argv_for_port(self.port)), timeout, env)
                return
            except ModelLoadError:
                if attempt < attempts and _PORT_IN_USE.search(self.stderr_tail()):
                    log.warning("%s: port %d was taken, retrying on another", self.name, self.port)
                    continue
                raise

    async def _start_once(self, argv: list[str], timeout: float, env: dict[str, str] | None) -> None:
        self._stderr.clear()
        self.process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if self.stdin_pipe else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=self.process_group,
            env=env,
        )
        if env is None and self.stdin_pipe:
            self.write_stdin(self.secret.encode() + b"\n")
        log.info("%s: started pid %d on port %d", self.name, self.process.pid, self.port)
        reader = asyncio.create_task(self._read_stderr(self.process))
        try:
            await self._wait_healthy(timeout)
        except BaseException:
            await self._kill_now()
            await asyncio.gather(reader, return_exceptions=True)
            raise
        self._tasks = [reader, asyncio.create_task(self._watch())]

    async def _wait_healthy(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        # Loopback only: never through a proxy from the environment (HTTP_PROXY, ALL_PROXY).
        async with httpx.AsyncClient(timeout=1.0, trust_env=False, headers=self.auth_headers) as client:
            while True:
                if self.process.returncode is not None:
                    raise ModelLoadError(self._failure(f"exited with code {self.process.returncode}"))
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ModelLoadError(self._failure(f"was not healthy within {timeout:.0f}s"))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 0.05)

    def _failure(self, what: str) -> str:
        tail = self.stderr_tail()
        log.error("%s %s; its stderr ends with:\n%s", self.name, what, tail)
        return f"{self.name} {what}" + (f"; its stderr ends with:\n{tail}" if tail else "")

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        # Drained continuously: a child blocked on a full pipe would stall generation.
        while line := await process.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            log.debug("%s: %s", self.name, text)

    async def _watch(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        if self._stopping:
            return
        log.error(
            "%s (pid %d) died with code %d; stderr ends with:\n%s",
            self.name,
            self.pid,
            code,
            self.stderr_tail(),
        )
        if self.on_exit is not None:
            self.on_exit(code, self.stderr_tail())

    def write_stdin(self, data: bytes) -> None:
        """Send bytes down the child's stdin pipe (see stdin_pipe)."""
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(data)

    async def stop(self, grace: float = 5.0) -> None:
        """Terminate, wait up to `grace` seconds, then kill; idempotent."""
        self._stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except asyncio.TimeoutError:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, process.pid)
                await self._kill_now()
        if process is not None and self.process_group:
            self._signal(signal.SIGKILL)  # whatever of the group outlived its leader
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _kill_now(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            self._signal(signal.SIGKILL)
            await process.wait()
        elif process is not None and self.process_group:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.process_group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
