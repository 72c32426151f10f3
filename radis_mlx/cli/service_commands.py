"""`radis-mlx service install|uninstall|status`: the click commands over service.py."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from radis_mlx.cli import service
from radis_mlx.cli.terminal import config_or_usage


def _manager() -> service.ServiceManager:
    try:
        return service.manager_for(sys.platform, Path.home(), service.current_uid())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("service")
def service_group() -> None:
    """Run the server at login: a launchd LaunchAgent (macOS) or a systemd user unit (Linux)."""


@service_group.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=1234, show_default=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="models.toml to serve (default: $RADIS_MLX_CONFIG, ./models.toml, else the user config).",
)
@click.option("--dry-run", is_flag=True, help="Print the service file and the commands; change nothing.")
def install(host: str, port: int, config_path: Path | None, dry_run: bool) -> None:
    """Install and start the service (re-running it replaces the previous one)."""
    config = config_or_usage(config_path, create=not dry_run)[1].path.resolve()
    manager = _manager()
    program = service.serve_program(host, port, config)
    spec = service.ServiceSpec(
        program=program,
        working_dir=config.parent,
        log_path=service.log_path(sys.platform, Path.home()),
        env=service.service_env(dict(os.environ), program),
    )
    if dry_run:
        click.echo(f"# would write {manager.path}:")
        click.echo(manager.render(spec).decode())
        for step in manager.install_steps():
            click.echo(f"# would run: {shlex.join(step.argv)}")
        return
    try:
        service.install(manager, spec, service.run_command)
    except service.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"installed {manager.path}; radis-mlx serves on http://{host}:{port}/v1 from now on")


@service_group.command()
@click.option("--dry-run", is_flag=True, help="Print the commands; change nothing.")
def uninstall(dry_run: bool) -> None:
    """Stop the service and remove it."""
    manager = _manager()
    if dry_run:
        for step in manager.uninstall_steps():
            click.echo(f"# would run: {shlex.join(step.argv)}")
        click.echo(f"# would remove {manager.path}")
        return
    try:
        removed = service.uninstall(manager, service.run_command)
    except service.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {manager.path}" if removed else "the service is not installed")


@service_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def service_status(as_json: bool) -> None:
    """Is the service installed, and running?"""
    manager = _manager()
    installed = manager.path.exists()
    running = service.is_running(manager, service.run_command)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "manager": manager.kind,
                    "path": str(manager.path),
                    "installed": installed,
                    "running": running,
                }
            )
        )
        return
    if not installed:
        click.echo(f"not installed ({manager.kind}); `radis-mlx service install` starts radis-mlx at login")
        return
    click.echo(f"installed: {manager.path} ({manager.kind}); {'running' if running else 'not running'}")
