"""The commands that talk to a running server: ps, status and chat."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from radis_mlx.cli.client import HELP, ServerDown, chat_loop
from radis_mlx.cli.terminal import CONFIG_OPTION, JSON_OPTION, URL_OPTION, print_json, server_client, table
from radis_mlx.pool.budget import format_bytes


@click.command()
@CONFIG_OPTION
@URL_OPTION
@JSON_OPTION
def ps(config_path: Path | None, url: str | None, as_json: bool) -> None:
    """List the running server's loaded models, with memory and TTL left."""
    body = server_client(config_path, url).call("GET", "/api/v0/models/loaded")
    if as_json:
        print_json(body)
        return
    rows = []
    for m in body["data"]:
        ttl = "pinned" if m["pinned"] else "never" if m["ttl_left"] is None else f"{m['ttl_left']:.0f}s"
        memory, idle = format_bytes(m["size_bytes"]), f"{m['idle_seconds']:.0f}s"
        rows.append([m["id"], m["engine"], m["state"], memory, str(m["active_requests"]), idle, ttl])
    table(["ID", "ENGINE", "STATE", "MEMORY", "ACTIVE", "IDLE", "TTL LEFT"], rows)
    click.echo(f"memory: {format_bytes(body['used_bytes'])} of {format_bytes(body['budget_bytes'])} budget")


@click.command()
@CONFIG_OPTION
@URL_OPTION
@JSON_OPTION
def status(config_path: Path | None, url: str | None, as_json: bool) -> None:
    """Is the server running? Its URL, counters, memory and loaded models (exit 1 when it is not)."""
    client = server_client(config_path, url, timeout=5)
    try:
        metrics = client.call("GET", "/api/v0/metrics")
        loaded = client.call("GET", "/api/v0/models/loaded")["data"]
    except ServerDown as exc:
        if as_json:
            print_json({"running": False, "url": f"{client.base}/v1", "error": exc.message})
        else:
            click.echo(exc.message, err=True)
        sys.exit(1)
    if as_json:
        print_json({"running": True, "url": f"{client.base}/v1", "metrics": metrics, "loaded": loaded})
        return
    click.echo(f"radis-mlx is running at {client.base}/v1 (dashboard: {client.base}/)")
    click.echo(
        f"up {metrics['uptime_seconds']:.0f}s, {metrics['requests_served']} requests served, "
        f"{metrics['requests_failed']} failed, {metrics['tokens_generated']} tokens generated"
    )
    click.echo(
        f"memory {format_bytes(metrics['memory_used_bytes'])} "
        f"of {format_bytes(metrics['memory_budget_bytes'])}, "
        f"{metrics['models_loaded']} of {metrics['models_available']} models loaded"
    )
    if loaded:
        table(
            ["LOADED", "ENGINE", "MEMORY"],
            [[m["id"], m["engine"], format_bytes(m["size_bytes"])] for m in loaded],
        )


@click.command()
@click.argument("model")
@click.option("--system", default=None, help="A system prompt for the conversation.")
@click.option("--max-tokens", type=int, default=None, help="Cap on each reply's length.")
@click.option("--temperature", type=float, default=None)
@click.option("-v", "--verbose", is_flag=True, help="Print tokens and speed after each reply.")
@CONFIG_OPTION
@URL_OPTION
def chat(
    model: str,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    verbose: bool,
    config_path: Path | None,
    url: str | None,
) -> None:
    """Chat with MODEL on the running server, streaming replies (/exit or Ctrl-D to leave)."""
    client = server_client(config_path, url)
    info = client.call("GET", f"/v1/models/{model}")  # unknown model: close matches, before any typing
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
        click.secho(f"chatting with {info['id']} on {client.base}; {HELP}", dim=True, err=True)
    params = {"max_tokens": max_tokens, "temperature": temperature}

    def read() -> str:
        if interactive:
            return input(">>> ")
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    chat_loop(
        client,
        info["id"],
        system=system,
        params={k: v for k, v in params.items() if v is not None},
        read=read,
        write=write,
        report=lambda line: click.secho(line, dim=True, err=True),
        verbose=verbose,
    )
