"""The SwiftBar/xbar plugin (scripts/radis-mlx.5s.py) against the live server, a dead port, its Start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import alive
from tests.support.server import free_port

PLUGIN = Path(__file__).resolve().parents[2] / "scripts" / "radis-mlx.5s.py"
LLAMACPP = "smollm2-llamacpp"


def plugin(*args: str, url: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs the plugin as SwiftBar does: an executable, settings in the environment, a HOME of its own."""
    environ = {**os.environ, "RADIS_MLX_URL": url, "HOME": str(home), **env}
    environ.pop("RADIS_API_KEY", None)
    return subprocess.run(
        [str(PLUGIN), *args], env=environ, capture_output=True, text=True, timeout=300, check=False
    )


def items(menu: str) -> list[str]:
    """The menu's lines without their SwiftBar parameters."""
    return [line.split(" | ")[0] for line in menu.splitlines()]


def test_plugin_is_an_executable_with_xbar_metadata():
    assert os.access(PLUGIN, os.X_OK)
    head = PLUGIN.read_text().splitlines()
    assert head[0] == "#!/usr/bin/env python3"
    assert any("<xbar.title>" in line for line in head[:6])


def test_menu_of_a_running_server(server, tmp_path):
    result = plugin(url=server.base, home=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("radis-mlx ●") and lines[1] == "---"
    assert f"Running on port {server.port}" in items(result.stdout)
    assert f"Open dashboard | href={server.base}/" in lines
    copy = next(line for line in lines if line.startswith("Copy base URL"))
    assert f"param1=copy param2={server.url} " in copy and "terminal=false" in copy
    stop = next(line for line in lines if line.startswith("Stop server"))
    assert f"bash={PLUGIN} param1=stop" in stop and "refresh=true" in stop
    assert "Memory " in result.stdout and " of " in result.stdout


def test_load_and_unload_from_the_menu(server, tmp_path):
    httpx.post(f"{server.base}/api/v0/models/unload", json={"model": LLAMACPP}, timeout=60)
    before = plugin(url=server.base, home=tmp_path).stdout
    load = f"--{LLAMACPP} | bash={PLUGIN} param1=load param2={LLAMACPP} terminal=false refresh=true"
    assert load in before.splitlines()

    loaded = plugin("load", LLAMACPP, url=server.base, home=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    menu = plugin(url=server.base, home=tmp_path).stdout
    row = next(line for line in items(menu) if line.startswith(f"{LLAMACPP}  "))
    assert "MiB" in row and "(llamacpp)" in row  # memory and engine of the loaded model
    assert f"--Unload | bash={PLUGIN} param1=unload param2={LLAMACPP} terminal=false refresh=true" in menu
    assert load not in menu.splitlines()

    assert plugin("unload", LLAMACPP, url=server.base, home=tmp_path).returncode == 0
    after = plugin(url=server.base, home=tmp_path).stdout
    assert load in after.splitlines()
    states = httpx.get(f"{server.base}/api/v0/models/{LLAMACPP}").json()
    assert states["state"] == "not-loaded"


def test_models_to_load_are_grouped_under_their_source(server, tmp_path):
    names = {
        "config": "models.toml",
        "hf-cache": "Hugging Face cache",
        "model-dir": "Model folders",
        "cache": "radis-mlx cache",
        "lmstudio": "LM Studio",
        "ollama": "Ollama",
    }
    models = httpx.get(f"{server.base}/api/v0/models").json()["data"]
    lines = items(plugin(url=server.base, home=tmp_path).stdout)
    heading = None
    under: dict[str, str] = {}  # model id → the source heading it is listed under
    for line in lines[lines.index("Load a model") + 1 :]:
        if line == "---" or not line.startswith("--"):  # the submenu ends
            break
        if line.removeprefix("--") in names.values():
            heading = line.removeprefix("--")
        else:
            under[line.removeprefix("--")] = heading
    idle = [m for m in models if m["state"] == "not-loaded"]
    assert idle and set(under) == {m["id"] for m in idle}
    for model in idle:
        assert under[model["id"]] == names.get(model["origin"], model["origin"]), model


def test_a_failed_load_is_a_message_not_a_traceback(server, tmp_path):
    result = plugin("load", "no-such-model", url=server.base, home=tmp_path)
    assert result.returncode != 0
    assert "no-such-model" in result.stderr and "Traceback" not in result.stderr


def test_menu_of_a_stopped_server(tmp_path):
    port = free_port()
    result = plugin(url=f"http://127.0.0.1:{port}", home=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "radis-mlx ○" and lines[1] == "---"
    assert f"Stopped (port {port})" in items(result.stdout)
    assert f"Start server | bash={PLUGIN} param1=start terminal=false refresh=true" in lines
    assert not any(line.startswith("Stop server") for line in lines)


def test_port_alone_from_the_environment(tmp_path):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "RADIS_MLX_URL"}
    result = subprocess.run(
        [str(PLUGIN)],
        env={**environ, "RADIS_MLX_PORT": str(port), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert f"Stopped (port {port})" in result.stdout


@pytest.mark.skipif(sys.platform == "darwin", reason="Start uses the LaunchAgent when one is installed")
def test_start_and_stop_actions_run_a_server(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[models.x]\nsource = "./nothing.gguf"\n')
    url = f"http://127.0.0.1:{free_port()}"
    env = {"RADIS_MLX_BIN": str(Path(sys.executable).parent / "radis-mlx"), "RADIS_MLX_CONFIG": str(config)}
    started = plugin("start", url=url, home=tmp_path, **env)
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / ".cache" / "radis-mlx" / "menubar-server.pid").read_text())
    try:
        deadline = time.monotonic() + 120
        while "Running on port" not in (menu := plugin(url=url, home=tmp_path).stdout):
            assert time.monotonic() < deadline, menu
            time.sleep(0.5)
        assert plugin("stop", url=url, home=tmp_path).returncode == 0
        deadline = time.monotonic() + 60
        while alive(pid):
            assert time.monotonic() < deadline, "the server did not stop"
            time.sleep(0.2)
        assert plugin(url=url, home=tmp_path).stdout.startswith("radis-mlx ○")
        assert not (tmp_path / ".cache" / "radis-mlx" / "menubar-server.pid").exists()
    finally:
        if alive(pid):
            os.kill(pid, 9)
