"""The official openai npm package (tests/node) against the session server, both engines.

`npm ci` installs the locked package into tests/node/node_modules (npm's cache under our cache dir),
then tests/node/check.mjs runs its checks and exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.e2e import ENGINES

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NPM_CACHE = Path.home() / ".cache" / "radis-mlx" / "npm"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the Node SDK check needs Node 20+ and npm")
    return path


@pytest.fixture(scope="module")
def node_modules() -> Path:
    npm = _tool("npm")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").is_file():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--cache", str(NPM_CACHE)],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return NODE_DIR / "node_modules"


def test_openai_npm_package_checks_pass(server, node_modules):
    env = {
        **os.environ,
        "RADIS_URL": server.url,
        "RADIS_CHAT_MODELS": ",".join(f"smollm2-{engine}" for engine in ENGINES),
        "RADIS_EMBED_MODEL": "minilm",
    }
    result = subprocess.run(
        [_tool("node"), "check.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every check printed its line: a script that stopped early cannot pass.
    checked = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok ")]
    expected = ["chat", "completions", "responses"] * len(ENGINES) + ["models", "embeddings", "errors"]
    assert sorted(checked) == sorted(expected), result.stdout
