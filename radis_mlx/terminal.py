"""What the commands share: finding the config and the server, rich tables, JSON output, options."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from radis_mlx.client import ServerClient
from radis_mlx.config import DEFAULT_CONFIG_NAME, Config, ConfigError, load_config

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="models.toml (default ./models.toml or $RADIS_MLX_CONFIG; optional here).",
)
URL_OPTION = click.option(
    "--url", default=None, help="The running server (default: host and port of the config)."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def config_or_usage(path: Path | None) -> Config:
    """The config at path, ./models.toml or $RADIS_MLX_CONFIG; a usage error when there is none."""
    if path is None:
        env = os.environ.get("RADIS_MLX_CONFIG")
        path = Path(env) if env else Path(DEFAULT_CONFIG_NAME)
        if not path.exists():
            raise click.UsageError(f"no {path} here; pass --config PATH or set RADIS_MLX_CONFIG")
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def optional_config(path: Path | None) -> Config:
    """As config_or_usage, but the defaults when no models.toml is around."""
    env = os.environ.get("RADIS_MLX_CONFIG")
    if path is None and not env and not Path(DEFAULT_CONFIG_NAME).exists():
        return Config()
    return config_or_usage(path)


def split_keys(values: list[str]) -> list[str]:
    """API keys from repeated options and comma-separated lists."""
    return [key.strip() for value in values for key in value.split(",") if key.strip()]


def server_url(config: Config, url: str | None) -> str:
    """The running server's base URL: --url, else the config's host and port."""
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return (url or f"http://{host}:{config.server.port}").rstrip("/")


def server_client(config_path: Path | None, url: str | None, timeout: float = 30) -> ServerClient:
    """A client for the running server, with the first key of $RADIS_API_KEY."""
    key = next(iter(split_keys([os.environ.get("RADIS_API_KEY", "")])), None)
    return ServerClient(server_url(optional_config(config_path), url), key, timeout)


def console(stderr: bool = False) -> Console:
    """A rich console; piped output keeps whole rows (no wrapping at 80 columns) for grep and awk."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 1000, highlight=False)


def table(header: list[str], rows: list[list[str]]) -> None:
    """A borderless table on stdout: one row per line, first column first."""
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in header:
        grid.add_column(name, no_wrap=True)
    for row in rows:
        grid.add_row(*row)
    console().print(grid)


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))
