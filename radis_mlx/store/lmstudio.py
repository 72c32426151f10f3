"""Where LM Studio keeps its downloaded models, found as LM Studio finds them (read-only).

Its home: $LMSTUDIO_HOME, else the folder named in ~/.lmstudio-home-pointer, else ~/.lmstudio and the
older ~/.cache/lm-studio (both when both exist). Its models folder: `downloadsFolder` in the home's
settings.json, else <home>/models, laid out as <publisher>/<repo>/ with GGUF files or an MLX folder
(lmstudio-js findLMStudioHome.ts, lms modelsFolder.ts). Nothing here writes: LM Studio writes its
pointer file itself, and its files are never moved or deleted by radis-mlx.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

ENV_HOME = "LMSTUDIO_HOME"
POINTER = ".lmstudio-home-pointer"


def lmstudio_homes() -> list[Path]:
    """LM Studio's home folder(s) on this machine; empty when it has none."""
    env = os.environ.get(ENV_HOME)
    if env:
        return [Path(env).expanduser()]
    home = Path.home()
    try:
        pointed = (home / POINTER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        pointed = ""
    if pointed:
        return [Path(pointed).expanduser()]
    return [path for path in (home / ".lmstudio", home / ".cache" / "lm-studio") if path.is_dir()]


def models_folder(home: Path) -> Path:
    """The models folder of an LM Studio home: settings.json's `downloadsFolder`, else <home>/models."""
    settings = home / "settings.json"
    try:
        version = settings.stat().st_mtime_ns
    except OSError:
        return home / "models"
    return _downloads_folder(settings, version) or home / "models"


@functools.lru_cache(maxsize=16)
def _downloads_folder(settings: Path, version: int) -> Path | None:
    """settings.json's `downloadsFolder`; read (and a bad file logged) once per version of the file."""
    try:
        folder = json.loads(settings.read_text(encoding="utf-8")).get("downloadsFolder")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("cannot read %s (%s); looking in %s", settings, exc, settings.parent / "models")
        return None
    return Path(folder).expanduser() if isinstance(folder, str) and folder else None


def lmstudio_models_folders() -> list[Path]:
    """Every LM Studio models folder that exists."""
    folders = [models_folder(home) for home in lmstudio_homes()]
    return [folder for folder in dict.fromkeys(folders) if folder.is_dir()]


def repo_folders(models: Path) -> Iterator[tuple[str, Path]]:
    """("publisher/repo", folder) for each <publisher>/<repo>/ folder, exactly two levels deep, in order."""
    for publisher in _folders(models):
        for repo in _folders(publisher):
            yield f"{publisher.name}/{repo.name}", repo


def _folders(parent: Path) -> list[Path]:
    try:
        return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
