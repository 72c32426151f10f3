"""radis-mlx as `pipx install` / `uv tool install` leave it: a wheel installed into a venv of its own, run
from an empty folder with a fresh HOME. The wheel must carry everything (dashboard, starter config)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from radis_mlx.bench.servers import Process, free_port
from radis_mlx.config import starter_config

REPO = Path(__file__).resolve().parents[2]
# Build with setuptools' own PEP 517 hook in this environment; an isolated build env is downloaded each
# time (~25 s). setuptools before 70.1 needs the `wheel` package for that (a test dependency).
BUILD = """
import importlib, sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
backend = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["build-backend"]
print(importlib.import_module(backend).build_wheel(sys.argv[1]))
"""


def build_wheel(source: Path, dist: Path) -> Path:
    """The wheel of a copy of the checkout (the checkout itself gets no build/ or egg-info)."""
    tree = source / "radis-mlx"
    shutil.copytree(
        REPO,
        tree,
        ignore=shutil.ignore_patterns(
            ".*", "__pycache__", "*.egg-info", "build", "dist", "tests", "node_modules"
        ),
    )
    inline = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    if inline:
        cmd = [sys.executable, "-c", BUILD, str(dist)]
    else:  # pip's isolated build: slower, needs the package index
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), "."]
    result = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = dist.glob("radis_mlx-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed --no-deps; the dependencies come from this environment."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Plain path lines: these folders join sys.path after the venv's own, and their .pth files (this
    # checkout's editable install) are not run, so `radis_mlx` can only come from the wheel.
    deps = dict.fromkeys(
        [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    )
    Path(purelib, "_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index"]
    result = subprocess.run([*install, "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return path / "bin" / "radis-mlx"


@pytest.mark.timeout(300)
def test_the_wheel_installed_alone_serves_from_an_empty_folder(tmp_path):
    wheel = build_wheel(tmp_path / "src", tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"radis_mlx/starter.toml", "radis_mlx/dashboard/index.html", "radis_mlx/dashboard/app.js"} <= set(
        names
    )
    assert not [n for n in names if n.startswith(("tests/", "scripts/"))]
    radis = fresh_venv(tmp_path / "venv", wheel)
    home, work = tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    work.mkdir()
    env = {"HOME": str(home), "RADIS_MLX_CACHE": str(tmp_path / "cache")}
    # PYTHONPATH too: the tests may run with the checkout on it; the installed tool never sees it.
    unset = ("XDG_CONFIG_HOME", "RADIS_MLX_CONFIG", "RADIS_API_KEY", "PYTHONPATH", "HF_HOME", "HF_HUB_CACHE")
    clean = {**{k: v for k, v in os.environ.items() if k not in unset}, **env}

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=clean, timeout=60)

    version = run(str(radis), "--version")
    expected = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert expected and version.stdout.strip() == f"radis-mlx, version {expected[1]}", version.stderr
    where = run(str(radis.parent / "python"), "-c", "import radis_mlx; print(radis_mlx.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr

    port = free_port()
    cmd = [str(radis), "serve", "--port", str(port), "--no-fetch"]
    server = Process(cmd, tmp_path / "serve.log", env, cwd=work, unset=unset)
    try:
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(f"{base}/health", 120)
        models = {m["id"]: m for m in httpx.get(f"{base}/v1/models").json()["data"]}
        assert models["smollm2-135m-instruct"]["origin"] == "config"
        page = httpx.get(f"{base}/", headers={"accept": "text/html"})
        assert page.status_code == 200 and "<html" in page.text  # the dashboard came with the wheel
        user_config = home / ".config" / "radis-mlx" / "models.toml"
        assert user_config.read_text() == starter_config()
        assert f"config {user_config} (user config, created now" in server.log_tail()
        assert list(work.iterdir()) == []  # nothing written where it was started
    finally:
        assert server.stop() == 0, server.log_tail()
