"""The house checks run with the tests, so CI enforces them: ruff lint, ruff format, mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "radis_mlx", "tests", "scripts"],
        ["ruff", "format", "--check", "radis_mlx", "tests", "scripts"],
        ["mypy", "radis_mlx"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(command):
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
