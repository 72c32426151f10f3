"""The child-process supervisor: early death, start deadline, port collisions, terminate → kill."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from radis_mlx.engines.child import supervisor
from radis_mlx.engines.child.supervisor import ChildProcess
from radis_mlx.errors import ModelLoadError

pytestmark = pytest.mark.anyio

# A minimal child that answers /health on the port it is given.
HEALTHY = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def python(code: str, *args: object) -> list[str]:
    return [sys.executable, "-c", code, *map(str, args)]


async def test_early_death_reports_the_stderr_tail():
    child = ChildProcess("test-child")
    code = "import sys; sys.stderr.write('loading...\\nerror: bad magic in model file\\n'); sys.exit(3)"
    with pytest.raises(ModelLoadError) as info:
        await child.start(lambda port: python(code), timeout=10)
    assert "exited with code 3" in info.value.message and "bad magic" in info.value.message


async def test_start_deadline_kills_a_child_that_never_gets_healthy():
    child = ChildProcess("test-child")
    with pytest.raises(ModelLoadError, match="not healthy within"):
        await child.start(lambda port: python("import time; time.sleep(60)"), timeout=0.5)
    assert not child.alive


async def test_a_port_collision_is_retried_on_another_port(monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    fresh = supervisor.free_port
    monkeypatch.setattr(supervisor, "free_port", lambda: next(ports, None) or fresh())
    # The same child twice: it fails to bind the taken port, then serves on the fresh one.
    child = ChildProcess("test-child")
    try:
        await child.start(lambda port: python(HEALTHY, port), timeout=10)
        assert child.alive and child.port != taken.getsockname()[1]
    finally:
        await child.stop()
        taken.close()


async def test_unexpected_exit_is_reported_and_stop_is_not():
    exits = []
    child = ChildProcess("test-child", on_exit=lambda code, tail: exits.append(code))
    await child.start(lambda port: python(HEALTHY, port), timeout=10)
    assert child.process is not None
    child.process.kill()
    await child.process.wait()
    for _ in range(100):
        if exits:
            break
        await asyncio.sleep(0.01)
    assert exits == [-9]
    await child.stop()

    calm = ChildProcess("test-child", on_exit=lambda code, tail: exits.append(code))
    await calm.start(lambda port: python(HEALTHY, port), timeout=10)
    await calm.stop()
    assert exits == [-9] and not calm.alive


async def test_stop_kills_a_child_that_ignores_sigterm():
    stubborn = "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + HEALTHY
    child = ChildProcess("test-child")
    await child.start(lambda port: python(stubborn, port), timeout=10)
    await child.stop(grace=0.3)
    assert child.process is not None and child.process.returncode == -9
