"""`radis-mlx service install|uninstall|status`: run the server at login.

macOS: a launchd LaunchAgent (~/Library/LaunchAgents/dev.radis-mlx.plist, `launchctl bootstrap gui/UID`).
Linux: a systemd user unit (~/.config/systemd/user/radis-mlx.service, `systemctl --user enable --now`).
The files are pure functions of a ServiceSpec; commands go through an injectable runner, so tests
(and `--dry-run`) never touch launchctl or systemctl.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "dev.radis-mlx"
UNIT_NAME = "radis-mlx.service"
# Passed through to the service: where models are cached and whether Hugging Face may be reached.
PASSED_ENV = ("RADIS_MLX_CACHE", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs: `radis-mlx serve` with a host, port and config."""

    program: list[str]
    working_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One service-manager command; `may_fail` for cleanups of what may not exist."""

    argv: list[str]
    may_fail: bool = False


def serve_program(host: str, port: int, config: Path, executable: Path | None = None) -> list[str]:
    """This environment's `radis-mlx serve` for a host, port and (absolute) config path."""
    scripts = Path(sys.executable).parent
    command = [str(executable)] if executable else _radis_mlx(scripts)
    return [*command, "serve", "--host", host, "--port", str(port), "--config", str(config.resolve())]


def _radis_mlx(scripts: Path) -> list[str]:
    entry = scripts / "radis-mlx"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "radis_mlx"]


def service_env(environ: dict[str, str], program: list[str]) -> dict[str, str]:
    """PATH with this environment's bin folder first, plus the cache settings the user has set."""
    bin_dir = str(Path(program[0]).parent)
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    env.update({name: environ[name] for name in PASSED_ENV if environ.get(name)})
    return env


def launchd_plist(spec: ServiceSpec) -> bytes:
    """The LaunchAgent: starts at login, restarted after a crash but not after a clean stop."""
    agent = {
        "Label": LABEL,
        "ProgramArguments": spec.program,
        "WorkingDirectory": str(spec.working_dir),
        "EnvironmentVariables": spec.env,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        # Background agents are throttled by default; inference should run at full speed.
        "ProcessType": "Interactive",
        "StandardOutPath": str(spec.log_path),
        "StandardErrorPath": str(spec.log_path),
    }
    return plistlib.dumps(agent)


def systemd_unit(spec: ServiceSpec) -> str:
    """The user unit: started with the user's session, restarted on failure."""
    env = "".join(f"Environment={_systemd_quote(f'{k}={v}')}\n" for k, v in spec.env.items())
    return (
        "[Unit]\n"
        "Description=radis-mlx: a local OpenAI-compatible LLM server\n"
        "After=network.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={' '.join(_systemd_quote(arg) for arg in spec.program)}\n"
        f"WorkingDirectory={_systemd_quote(str(spec.working_dir))}\n"
        f"{env}"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "TimeoutStopSec=30\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def _systemd_quote(arg: str) -> str:
    # systemd expands %specifiers and $VARIABLES inside ExecStart; double them to keep them literal.
    return shlex.quote(arg.replace("%", "%%").replace("$", "$$"))


@dataclass(frozen=True)
class ServiceManager:
    """Where the service file lives and the commands that install, remove and inspect it."""

    kind: str  # "launchd" or "systemd"
    path: Path
    uid: int

    def render(self, spec: ServiceSpec) -> bytes:
        return launchd_plist(spec) if self.kind == "launchd" else systemd_unit(spec).encode()

    def install_steps(self) -> list[Step]:
        if self.kind == "launchd":
            # bootout first: bootstrap refuses a label that is already loaded (a re-install).
            return [Step(["launchctl", "bootout", self._target], True), Step(self._bootstrap)]
        return [
            Step(["systemctl", "--user", "daemon-reload"]),
            Step(["systemctl", "--user", "enable", UNIT_NAME]),
            Step(["systemctl", "--user", "restart", UNIT_NAME]),
        ]

    def uninstall_steps(self) -> list[Step]:
        if self.kind == "launchd":
            return [Step(["launchctl", "bootout", self._target], True)]
        return [Step(["systemctl", "--user", "disable", "--now", UNIT_NAME], True)]

    def after_removal_steps(self) -> list[Step]:
        return [] if self.kind == "launchd" else [Step(["systemctl", "--user", "daemon-reload"], True)]

    def status_step(self) -> Step:
        if self.kind == "launchd":
            return Step(["launchctl", "print", self._target], True)
        return Step(["systemctl", "--user", "is-active", UNIT_NAME], True)

    @property
    def _target(self) -> str:
        return f"gui/{self.uid}/{LABEL}"

    @property
    def _bootstrap(self) -> list[str]:
        return ["launchctl", "bootstrap", f"gui/{self.uid}", str(self.path)]


def manager_for(platform: str, home: Path, uid: int) -> ServiceManager:
    """launchd on macOS ('darwin'), systemd --user on Linux."""
    if platform == "darwin":
        return ServiceManager("launchd", home / "Library" / "LaunchAgents" / f"{LABEL}.plist", uid)
    if platform.startswith("linux"):
        return ServiceManager("systemd", home / ".config" / "systemd" / "user" / UNIT_NAME, uid)
    raise ValueError(f"no service manager for {platform}; run `radis-mlx serve` from a terminal")


def log_path(platform: str, home: Path) -> Path:
    """Where the service writes its log (systemd keeps its own journal; this is for launchd)."""
    if platform == "darwin":
        return home / "Library" / "Logs" / "radis-mlx.log"
    return home / ".local" / "state" / "radis-mlx" / "radis-mlx.log"


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The real runner: the command's output is captured for the caller to show."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


class ServiceError(Exception):
    """A service-manager command failed; the message carries its output."""


def install(manager: ServiceManager, spec: ServiceSpec, runner: Runner) -> None:
    """Write the service file and start the service."""
    manager.path.parent.mkdir(parents=True, exist_ok=True)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    manager.path.write_bytes(manager.render(spec))
    _run(manager.install_steps(), runner)


def uninstall(manager: ServiceManager, runner: Runner) -> bool:
    """Stop the service and remove its file; False if it was not installed."""
    if not manager.path.exists():
        return False
    _run(manager.uninstall_steps(), runner)
    manager.path.unlink()
    _run(manager.after_removal_steps(), runner)
    return True


def is_running(manager: ServiceManager, runner: Runner) -> bool:
    """Whether the service manager reports the service as running."""
    if not manager.path.exists():
        return False
    result = runner(manager.status_step().argv)
    if manager.kind == "launchd":
        return result.returncode == 0 and "state = running" in result.stdout
    return result.returncode == 0 and result.stdout.strip() == "active"


def _run(steps: list[Step], runner: Runner) -> None:
    for step in steps:
        result = runner(step.argv)
        if result.returncode != 0 and not step.may_fail:
            output = (result.stderr or result.stdout).strip()
            raise ServiceError(f"`{shlex.join(step.argv)}` failed ({result.returncode}): {output}")


def current_uid() -> int:
    """The user id launchctl's gui/ domain names (0 where there is none)."""
    return os.getuid() if hasattr(os, "getuid") else 0
