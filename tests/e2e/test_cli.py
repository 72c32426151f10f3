"""`radis-mlx serve` as a user runs it: the repo's models.toml, port clashes, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from openai import OpenAI

from tests.support.server import RunningServer, free_port

REPO = Path(__file__).resolve().parents[2]


def test_readme_quickstart_answers_paris(tmp_path, smollm_gguf):
    """The README's first command serves models.toml; the README's Python snippet gets Paris."""
    server = RunningServer((REPO / "models.toml").read_text(), tmp_path).wait_ready()
    try:
        with OpenAI(base_url=server.url, api_key="anything", max_retries=0) as client:
            assert "smollm2-135m-instruct" in [m.id for m in client.models.list().data]
            reply = client.chat.completions.create(
                model="smollm2-135m-instruct",
                temperature=0,
                max_tokens=12,
                messages=[{"role": "user", "content": "Which city is the capital of France?"}],
            )
        assert "Paris" in reply.choices[0].message.content
    finally:
        assert server.stop() == 0, server.log_tail()


def test_port_in_use_is_a_clear_message(server, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "radis_mlx",
            "serve",
            "--port",
            str(server.port),
            "--no-fetch",
            "--config",
            str(server.config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"port {server.port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigint_shuts_down_cleanly(tmp_path, smollm_gguf):
    server = RunningServer('[models.x]\nsource = "./nothing.gguf"\n', tmp_path).wait_ready()
    server.process.send_signal(signal.SIGINT)
    code = server.process.wait(30)
    assert server.stop() == code == 0, server.log_tail()
    assert "Traceback" not in server.log_tail()


def test_a_missing_config_named_on_the_command_line_is_a_usage_error(tmp_path):
    # Without --config, serve falls back to the user config (tests/e2e/test_user_home.py); a named file
    # that is not there is a mistake to report, not a reason to serve something else.
    result = subprocess.run(
        [sys.executable, "-m", "radis_mlx", "serve", "--config", "nope.toml"],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "nope.toml" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".config").exists()


def test_sigterm_finishes_in_flight_streams_then_exits_0(tmp_path, smollm_gguf):
    config = f'[models.m]\nsource = "{smollm_gguf}"\nengine = "mlx"\ncontext_length = 2048\n'
    server = RunningServer(config, tmp_path).wait_ready()
    with OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Count from one to twenty."}],
            max_tokens=20,
            temperature=0,
            stream=True,
        )
        chunks = [next(stream)]
        server.process.send_signal(signal.SIGTERM)
        chunks += list(stream)
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 5
    assert server.process.wait(30) == 0
    assert server.stop() == 0, server.log_tail()


def test_non_loopback_bind_without_a_key_warns_loudly(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[models.x]\nsource = "./nothing.gguf"\n')
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "radis_mlx",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--no-fetch",
            "--config",
            str(config),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(2)]
        assert any("WARNING" in line and "without an API key" in line for line in lines), lines
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()
