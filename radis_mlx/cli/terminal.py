"""What the commands share: finding the config and the server, rich tables, JSON output, options."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from radis_mlx.cli.client import ServerClient
from radis_mlx.config import (
    ENV_CONFIG,
    Config,
    ConfigError,
    ConfigPath,
    env_api_keys,
    read_config,
    split_keys,
)

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="models.toml (default: $RADIS_MLX_CONFIG, ./models.toml, else ~/.config/radis-mlx/models.toml).",
)
URL_OPTION = click.option(
    "--url", default=None, help="The running server (default: host and port of the config)."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def config_or_usage(path: Path | None, *, create: bool = False) -> tuple[Config, ConfigPath, bool]:
    """The config config.py chooses, where it is, and whether it was created now; a usage error if unreadable.

    `create` writes the user config from the starter when it is the one chosen and missing (serve).
    """
    try:
        return read_config(path, create=create)
    except ConfigError as exc:
        raise click.UsageError(f"{exc}; pass --config PATH or set {ENV_CONFIG}") from None


def optional_config(path: Path | None) -> Config:
    """The config for commands that only read it (a missing user config reads as the starter)."""
    return config_or_usage(path)[0]


def server_url(config: Config, url: str | None) -> str:
    """The running server's base URL: --url, else the config's host and port."""
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return (url or f"http://{host}:{config.server.port}").rstrip("/")


def file_api_keys(config: Config, extra_file: Path | None = None) -> list[str]:
    """The keys in [server] api_key_file (relative to models.toml) and in `extra_file` (--api-key-file):
    one a line (or comma-separated), # comments skipped; an unreadable file is a usage error."""
    named = config.server.api_key_file
    keys = []
    for file in [Path(config.base_dir) / Path(named).expanduser() if named else None, extra_file]:
        try:
            lines = file.expanduser().read_text().splitlines() if file is not None else []
        except OSError as exc:
            raise click.UsageError(f"cannot read the API key file {file}: {exc.strerror}") from None
        keys += split_keys([line for line in lines if not line.lstrip().startswith("#")])
    return keys


def server_client(config_path: Path | None, url: str | None, timeout: float = 30) -> ServerClient:
    """A client for the running server, with the first key of $RADIS_API_KEY, else of models.toml's
    keys (its api_keys, then its api_key_file)."""
    config = optional_config(config_path)
    keys = [*env_api_keys(), *config.server.api_keys, *file_api_keys(config)]
    return ServerClient(server_url(config, url), next(iter(keys), None), timeout)


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
