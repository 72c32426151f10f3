"""The `radis-mlx` command: click commands over the same code the server uses."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import msgspec
import uvicorn

from radis_mlx.config import DEFAULT_CONFIG_NAME, Config, ConfigError, load_config
from radis_mlx.errors import RadisError
from radis_mlx.store import ModelStore

log = logging.getLogger("radis_mlx")


def _config(path: Path | None) -> Config:
    if path is None:
        env = os.environ.get("RADIS_MLX_CONFIG")
        path = Path(env) if env else Path(DEFAULT_CONFIG_NAME)
        if not path.exists():
            raise click.UsageError(f"no {path} here; pass --config PATH or set RADIS_MLX_CONFIG")
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _fetch_all(config: Config) -> None:
    store = ModelStore(config.cache_dir, Path(config.base_dir))
    for model_id, entry in config.models.items():
        if store.cached_path(entry.source) is not None:
            continue
        click.echo(f"fetching {model_id} from {entry.source}", err=True)
        try:
            store.materialize(entry.source)
        except RadisError as exc:
            click.echo(f"warning: {model_id} is not available yet: {exc.message}", err=True)


def _keys(values: list[str]) -> list[str]:
    return [key.strip() for value in values for key in value.split(",") if key.strip()]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is already in use (another radis-mlx or LM Studio?); "
                f"choose another with --port"
            ) from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; a clean shutdown should exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


@click.group()
@click.version_option(package_name="radis-mlx")
def main() -> None:
    """radis-mlx: a local, OpenAI-compatible LLM server."""


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 1234).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="models.toml to serve (default ./models.toml or $RADIS_MLX_CONFIG).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--fetch/--no-fetch", default=True, help="Download configured models before serving.")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Require this key (repeatable; $RADIS_API_KEY may hold several, comma-separated).",
)
@click.option("--cors", "cors_origins", multiple=True, help="Allow this browser origin (repeatable, or '*').")
@click.option("--allow-host", "allowed_hosts", multiple=True, help="Accept this Host name besides localhost.")
def serve(
    host: str | None,
    port: int | None,
    config_path: Path | None,
    log_level: str | None,
    fetch: bool,
    api_keys: tuple[str, ...],
    cors_origins: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
) -> None:
    """Serve the OpenAI API for the models in models.toml."""
    from radis_mlx.app import create_app
    from radis_mlx.security import is_loopback

    config = _config(config_path)
    settings = msgspec.structs.replace(
        config.server,
        host=host or config.server.host,
        port=config.server.port if port is None else port,
        log_level=log_level or config.server.log_level,
        api_keys=[
            *config.server.api_keys,
            *_keys([*api_keys, os.environ.get("RADIS_API_KEY", "")]),
        ],
        cors_origins=[*config.server.cors_origins, *cors_origins],
        allowed_hosts=[*config.server.allowed_hosts, *allowed_hosts],
    )
    config = msgspec.structs.replace(config, server=settings)
    level = settings.log_level
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not is_loopback(settings.host) and not settings.api_keys:
        click.secho(
            f"WARNING: listening on {settings.host} without an API key: anyone who can reach this machine "
            "can use your models. Pass --api-key or set RADIS_API_KEY.",
            fg="red",
            bold=True,
            err=True,
        )
    sock = _bind(settings.host, settings.port)
    if fetch:
        _fetch_all(config)
    app = create_app(config)
    click.echo(
        f"radis-mlx serving {len(config.models)} model(s) on http://{settings.host}:{settings.port}/v1",
        err=True,
    )
    server = _GracefulServer(
        uvicorn.Config(app, log_level=level, timeout_graceful_shutdown=10, access_log=level == "debug")
    )
    server.run(sockets=[sock])


@main.command()
@click.argument("model_id")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
def pull(model_id: str, config_path: Path | None) -> None:
    """Download a configured model into the cache."""
    config = _config(config_path)
    entry = config.models.get(model_id)
    if entry is None:
        raise click.ClickException(f"unknown model '{model_id}'; known: {', '.join(config.models)}")
    try:
        path = ModelStore(config.cache_dir, Path(config.base_dir)).materialize(entry.source)
    except RadisError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(str(path))


if __name__ == "__main__":
    sys.exit(main())
