"""`radis-mlx config`: which models.toml is used and why, where models are looked for, the settings used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import msgspec

from radis_mlx.cli.terminal import CONFIG_OPTION, JSON_OPTION, config_or_usage, print_json
from radis_mlx.config import Config, with_overrides
from radis_mlx.pool.discovery import hf_cache_dir
from radis_mlx.store.lmstudio import lmstudio_homes, models_folder
from radis_mlx.store.ollama import ollama_models_dir


def model_places(config: Config) -> list[dict[str, Any]]:
    """Each place models are looked for: what it is, its folder, whether it is searched and exists."""
    pool = config.pool
    base = Path(config.base_dir)
    lmstudio = lmstudio_homes() or [Path.home() / ".lmstudio"]  # where LM Studio would put it
    places = [
        ("radis-mlx cache", config.cache_dir, True),
        ("Hugging Face cache", hf_cache_dir(), pool.discover_hf_cache),
        *(("model_dirs", base / Path(d).expanduser(), True) for d in pool.model_dirs),
        *(("LM Studio", models_folder(home), pool.discover_lmstudio) for home in lmstudio),
        ("Ollama", ollama_models_dir(), pool.discover_ollama),
    ]
    return [
        {"source": name, "path": str(path), "searched": searched, "exists": path.is_dir()}
        for name, path, searched in places
    ]


def effective_settings(config: Config) -> dict[str, Any]:
    """The config with the environment merged in, as plain values; API keys masked."""
    settings: dict[str, Any] = msgspec.to_builtins(with_overrides(config))
    server = settings.get("server", {})
    if server.get("api_keys"):
        server["api_keys"] = ["***"] * len(server["api_keys"])
    return settings


@click.command("config")
@CONFIG_OPTION
@JSON_OPTION
def config_command(config_path: Path | None, as_json: bool) -> None:
    """Show which models.toml is used (and why), where models are looked for, and the settings in effect."""
    config, chosen, _ = config_or_usage(config_path)
    report: dict[str, Any] = {
        "path": str(chosen.path.absolute()),
        "reason": chosen.reason,
        "exists": chosen.path.exists(),
        "model_places": model_places(config),
        "settings": effective_settings(config),
    }
    if as_json:
        print_json(report)
        return
    state = "" if report["exists"] else " (not created yet: `radis-mlx serve` creates it from the starter)"
    click.echo(f"config: {report['path']} ({chosen.reason}){state}")
    click.echo("models are looked for in:")
    for place in report["model_places"]:
        flags = ("" if place["searched"] else "off, ") + ("found" if place["exists"] else "absent")
        click.echo(f"  {place['source']:<20} {place['path']}  ({flags})")
    click.echo("settings in effect:")
    for line in _toml_lines(report["settings"]):
        click.echo(line)


def _toml_lines(settings: dict[str, Any], prefix: str = "") -> list[str]:
    """Nested settings as TOML-like lines: scalars first, then one [table] per nested table."""
    lines: list[str] = []
    scalars = {k: v for k, v in settings.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in scalars.items()]
    for key, value in tables.items():
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        lines += _toml_lines(value, name)
    return lines


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)
