"""`radis-mlx service`: the LaunchAgent and systemd unit as text; the commands run, with a fake runner."""

from __future__ import annotations

import configparser
import plistlib
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from radis_mlx.cli import service
from radis_mlx.cli.main import main

UID = 501


class FakeRunner:
    """Records commands; answers each with the return code and output given for its first words."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        for prefix, (code, output) in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return subprocess.CompletedProcess(list(argv), code, output, output)
        return subprocess.CompletedProcess(list(argv), 0, "", "")


@pytest.fixture
def spec(tmp_path) -> service.ServiceSpec:
    config = tmp_path / "my models" / "100% local.toml"  # a space and a % systemd would expand
    config.parent.mkdir()
    config.write_text("")
    program = service.serve_program("127.0.0.1", 4321, config)
    env = service.service_env({"RADIS_MLX_CACHE": "/data/cache", "UNRELATED": "x"}, program)
    return service.ServiceSpec(program, config.parent, tmp_path / "logs" / "radis-mlx.log", env)


def test_serve_program_runs_this_environments_radis_mlx(tmp_path):
    config = tmp_path / "models.toml"
    program = service.serve_program("0.0.0.0", 1234, config)
    entry = Path(sys.executable).parent / "radis-mlx"
    assert program[: program.index("serve")] in ([str(entry)], [sys.executable, "-m", "radis_mlx"])
    assert program[program.index("serve") :] == [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "1234",
        "--config",
        str(config.resolve()),
    ]


def test_launchd_plist_parses_and_runs_the_server(spec):
    agent = plistlib.loads(service.launchd_plist(spec))
    assert agent["Label"] == "dev.radis-mlx"
    assert agent["ProgramArguments"] == spec.program
    assert agent["WorkingDirectory"] == str(spec.working_dir)
    assert agent["RunAtLoad"] is True
    # A crash restarts it; a clean stop (exit 0 after SIGTERM) does not.
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["StandardErrorPath"] == agent["StandardOutPath"] == str(spec.log_path)
    env = agent["EnvironmentVariables"]
    assert env["RADIS_MLX_CACHE"] == "/data/cache" and "UNRELATED" not in env
    assert env["PATH"].split(":")[0] == str(Path(spec.program[0]).parent)


def test_systemd_unit_execstart_round_trips_odd_paths(spec):
    text = service.systemd_unit(spec)
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    exec_start = unit["Service"]["ExecStart"]
    assert "%%" in exec_start  # systemd would otherwise expand "% l" as a specifier
    assert [arg.replace("%%", "%") for arg in shlex.split(exec_start)] == spec.program
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"
    assert "Environment=RADIS_MLX_CACHE=/data/cache\n" in text


def test_manager_paths_per_platform(tmp_path):
    mac = service.manager_for("darwin", tmp_path, UID)
    assert mac.kind == "launchd"
    assert mac.path == tmp_path / "Library" / "LaunchAgents" / "dev.radis-mlx.plist"
    linux = service.manager_for("linux", tmp_path, UID)
    assert linux.kind == "systemd"
    assert linux.path == tmp_path / ".config" / "systemd" / "user" / "radis-mlx.service"
    with pytest.raises(ValueError, match="no service manager"):
        service.manager_for("win32", tmp_path, UID)


def test_launchd_install_writes_the_plist_and_bootstraps(tmp_path, spec):
    manager = service.manager_for("darwin", tmp_path / "home", UID)
    # bootout of a service that is not loaded fails; a first install must not care.
    runner = FakeRunner({("launchctl", "bootout"): (3, "Boot-out failed: 3: No such process")})
    service.install(manager, spec, runner)
    assert plistlib.loads(manager.path.read_bytes())["ProgramArguments"] == spec.program
    assert runner.calls == [
        ["launchctl", "bootout", f"gui/{UID}/dev.radis-mlx"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(manager.path)],
    ]
    assert spec.log_path.parent.is_dir()


def test_systemd_install_reloads_enables_and_starts(tmp_path, spec):
    manager = service.manager_for("linux", tmp_path / "home", UID)
    runner = FakeRunner()
    service.install(manager, spec, runner)
    assert manager.path.read_text() == service.systemd_unit(spec)
    assert runner.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "radis-mlx.service"],
        ["systemctl", "--user", "restart", "radis-mlx.service"],
    ]


def test_a_failing_command_is_an_error_with_its_output(tmp_path, spec):
    manager = service.manager_for("darwin", tmp_path, UID)
    runner = FakeRunner({("launchctl", "bootstrap"): (5, "Bootstrap failed: 5: Input/output error")})
    with pytest.raises(service.ServiceError, match="Input/output error"):
        service.install(manager, spec, runner)


def test_uninstall_stops_and_removes(tmp_path, spec):
    manager = service.manager_for("linux", tmp_path, UID)
    runner = FakeRunner()
    assert service.uninstall(manager, runner) is False and runner.calls == []
    service.install(manager, spec, runner)
    runner.calls.clear()
    assert service.uninstall(manager, runner) is True
    assert not manager.path.exists()
    assert runner.calls == [
        ["systemctl", "--user", "disable", "--now", "radis-mlx.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]


@pytest.mark.parametrize(
    ("platform", "answer", "running"),
    [
        ("darwin", (0, "gui/501/dev.radis-mlx = {\n\tstate = running\n\tpid = 812\n}"), True),
        ("darwin", (0, "gui/501/dev.radis-mlx = {\n\tstate = not running\n}"), False),
        ("darwin", (113, 'Could not find service "dev.radis-mlx"'), False),
        ("linux", (0, "active\n"), True),
        ("linux", (3, "inactive\n"), False),
    ],
)
def test_is_running_reads_the_managers_answer(tmp_path, platform, answer, running):
    manager = service.manager_for(platform, tmp_path, UID)
    manager.path.parent.mkdir(parents=True)
    manager.path.write_text("")
    runner = FakeRunner({(manager.status_step().argv[0],): answer})
    assert service.is_running(manager, runner) is running


def test_cli_dry_run_prints_and_changes_nothing(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[models.x]\nsource = "./x.gguf"\n')
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main,
        ["service", "install", "--dry-run", "--port", "4321", "--config", str(config)],
        env={"HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    assert "--port 4321" in result.output or "<string>4321</string>" in result.output
    assert str(config.resolve()) in result.output
    assert "# would run: " in result.output
    assert not home.exists()
    removed = CliRunner().invoke(main, ["service", "uninstall", "--dry-run"], env={"HOME": str(home)})
    assert removed.exit_code == 0 and "# would remove" in removed.output
    assert not home.exists()
