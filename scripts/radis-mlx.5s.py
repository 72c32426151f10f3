#!/usr/bin/env python3
# <xbar.title>radis-mlx</xbar.title>
# <xbar.desc>State, loaded models and controls of a local radis-mlx server.</xbar.desc>
# <xbar.dependencies>python3, radis-mlx</xbar.dependencies>
# <swiftbar.hideRunInTerminal>true</swiftbar.hideRunInTerminal>
"""The radis-mlx menu-bar plugin for SwiftBar or xbar (the file name's `5s` refreshes it every 5 seconds).

Run with no arguments it prints the menu (models to load grouped by where they come from: models.toml,
the Hugging Face cache, LM Studio, Ollama...); the menu's actions run it again with one:
`start`, `stop`, `load MODEL`, `unload MODEL`, `copy TEXT`. Standard library only: it runs with the
system python3. Settings come from the environment:
  RADIS_MLX_URL      the server (default http://127.0.0.1:1234; RADIS_MLX_PORT changes just the port)
  RADIS_API_KEY      the key, when the server requires one
  RADIS_MLX_BIN      the radis-mlx executable for Start (default: found on PATH)
  RADIS_MLX_CONFIG   the models.toml Start serves
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LABEL = "dev.radis-mlx"
TIMEOUT = 2.0
# Where a model comes from (/api/v0/models `origin`), as the menu names it.
SOURCES = {
    "config": "models.toml",
    "hf-cache": "Hugging Face cache",
    "model-dir": "Model folders",
    "cache": "radis-mlx cache",
    "lmstudio": "LM Studio",
    "ollama": "Ollama",
}
SELF = str(Path(__file__).resolve())


def base_url() -> str:
    url = os.environ.get("RADIS_MLX_URL")
    if url:
        return url.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('RADIS_MLX_PORT', '1234')}"


def port_of(url: str) -> str:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    return rest.rsplit(":", 1)[1] if ":" in rest else ("443" if url.startswith("https") else "80")


def call(path: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT) -> Any:
    """One JSON call to the server; raises urllib's errors."""
    headers = {"content-type": "application/json"}
    key = os.environ.get("RADIS_API_KEY", "").split(",")[0].strip()
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url() + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def action(title: str, *args: str, refresh: bool = True) -> str:
    """A menu line that runs this plugin again with arguments."""
    params = " ".join(f"param{i}={quote(arg)}" for i, arg in enumerate(args, 1))
    return f"{title} | bash={quote(SELF)} {params} terminal=false refresh={str(refresh).lower()}"


def quote(value: str) -> str:
    """SwiftBar's quoting: double quotes around a value with spaces."""
    return f'"{value}"' if any(c.isspace() for c in value) else value


def menu() -> list[str]:
    """The menu in SwiftBar's format: the title line, `---`, then items."""
    url = base_url()
    try:
        metrics = call("/api/v0/metrics")
        loaded = call("/api/v0/models/loaded")["data"]
        models = call("/api/v0/models")["data"]
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            reason = "API key required: set RADIS_API_KEY" if exc.code == 401 else "refused (Host check)"
            return ["radis-mlx ⚠", "---", f"Running on port {port_of(url)}, {reason} | color=orange"]
        return ["radis-mlx ⚠", "---", f"Server error {exc.code} on port {port_of(url)} | color=red"]
    except (OSError, ValueError, KeyError):
        return stopped_menu(url)
    return running_menu(url, metrics, loaded, models)


def stopped_menu(url: str) -> list[str]:
    return [
        "radis-mlx ○",
        "---",
        f"Stopped (port {port_of(url)}) | color=gray",
        action("Start server", "start"),
        "---",
        "Refresh | refresh=true",
    ]


def running_menu(url: str, metrics: dict[str, Any], loaded: list[Any], models: list[Any]) -> list[str]:
    lines = [
        f"radis-mlx ● {len(loaded)}" if loaded else "radis-mlx ●",
        "---",
        f"Running on port {port_of(url)} | color=green",
        f"{metrics['requests_served']} requests, {metrics['tokens_generated']} tokens generated | size=12",
        f"Memory {format_bytes(metrics['memory_used_bytes'])} of "
        f"{format_bytes(metrics['memory_budget_bytes'])} | size=12",
        "---",
        "Loaded models" if loaded else "No model loaded",
    ]
    origins = {m["id"]: m.get("origin", "config") for m in models}
    for model in loaded:
        origin = origins.get(model["id"], "config")
        source = "" if origin == "config" else f", {source_name(origin)}"
        lines.append(f"{model['id']}  {format_bytes(model['size_bytes'])} ({model['engine']}{source})")
        lines.append("--" + action("Unload", "unload", model["id"]))
    idle = [m for m in models if m["state"] == "not-loaded"]
    if idle:
        lines.append("Load a model")
        for origin in dict.fromkeys(m.get("origin", "config") for m in idle):  # sources in list order
            lines.append(f"--{source_name(origin)} | size=11 color=gray")
            lines += [
                "--" + action(m["id"], "load", m["id"]) for m in idle if m.get("origin", "config") == origin
            ]
    lines += [
        "---",
        action(f"Copy base URL  {url}/v1", "copy", f"{url}/v1", refresh=False),
        f"Open dashboard | href={url}/",
        "---",
        action("Stop server", "stop"),
        "Refresh | refresh=true",
    ]
    return lines


def source_name(origin: str) -> str:
    return SOURCES.get(origin, origin)


def launch_agent() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def pid_file() -> Path:
    return Path.home() / ".cache" / "radis-mlx" / "menubar-server.pid"


def start() -> None:
    """Start the login service if installed, else `radis-mlx serve` in the background."""
    if launch_agent().exists():
        domain = f"gui/{os.getuid()}"
        subprocess.run(["launchctl", "bootstrap", domain, str(launch_agent())], check=False)
        subprocess.run(["launchctl", "kickstart", f"{domain}/{LABEL}"], check=False)
        return
    executable = os.environ.get("RADIS_MLX_BIN") or shutil.which("radis-mlx")
    if not executable:
        sys.exit("radis-mlx is not on PATH; set RADIS_MLX_BIN in the plugin's environment")
    command = [executable, "serve", "--port", port_of(base_url())]
    config = os.environ.get("RADIS_MLX_CONFIG")
    if config:
        command += ["--config", config]
    pid_file().parent.mkdir(parents=True, exist_ok=True)
    log = (pid_file().parent / "menubar-server.log").open("ab")
    cwd = Path(config).resolve().parent if config else Path.home()
    process = subprocess.Popen(command, stdout=log, stderr=log, cwd=cwd, start_new_session=True)
    pid_file().write_text(str(process.pid))


def stop() -> None:
    """SIGTERM to the login service or to the server Start launched (both finish requests first)."""
    if launch_agent().exists():
        subprocess.run(["launchctl", "kill", "SIGTERM", f"gui/{os.getuid()}/{LABEL}"], check=False)
        return
    try:
        os.kill(int(pid_file().read_text()), signal.SIGTERM)
    except (OSError, ValueError):
        sys.exit("this server was not started from the menu; stop it where it runs")
    pid_file().unlink(missing_ok=True)


def copy(text: str) -> None:
    subprocess.run(["pbcopy"], input=text.encode(), check=False)


def main(argv: list[str]) -> None:
    if not argv:
        print("\n".join(menu()))
    elif argv[0] == "start":
        start()
    elif argv[0] == "stop":
        stop()
    elif argv[0] in ("load", "unload") and len(argv) == 2:
        # A load can take minutes; SwiftBar refreshes the menu once this returns.
        try:
            call(f"/api/v0/models/{argv[0]}", {"model": argv[1]}, timeout=600)
        except urllib.error.HTTPError as exc:
            sys.exit(f"{argv[0]} {argv[1]} failed: {exc.read().decode(errors='replace')}")
        except OSError as exc:
            sys.exit(f"{argv[0]} {argv[1]} failed: {exc}")
    elif argv[0] == "copy" and len(argv) == 2:
        copy(argv[1])
    else:
        sys.exit(f"usage: {Path(SELF).name} [start | stop | load MODEL | unload MODEL | copy TEXT]")


if __name__ == "__main__":
    main(sys.argv[1:])
