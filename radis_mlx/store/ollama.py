"""Ollama's model store, read-only: $OLLAMA_MODELS, else ~/.ollama/models.

    manifests/<host>/<namespace>/<model>/<tag>   a JSON manifest naming the model's layers
    blobs/sha256-<hex>                           every layer, content-addressed

The model layer is the GGUF itself (a blob without a `.gguf` suffix: store/gguf.is_gguf knows it by its
magic). The params layer holds the Modelfile's PARAMETERs, the system layer its SYSTEM prompt; the
template layer is Ollama's Go template, which is not translated: the GGUF's own Jinja template is used.
Names follow Ollama's display names: "llama3.2:3b" (registry.ollama.ai/library), "user/model:tag",
"hf.co/org/repo:Q4_K_M". A manifest that cannot be read is skipped with one log line per file version,
never a failed listing. Blobs are shared between tags and reference-counted by Ollama: radis-mlx never
deletes them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radis_mlx.store.gguf import is_gguf

log = logging.getLogger(__name__)

ENV_MODELS = "OLLAMA_MODELS"
DEFAULT_TAG = "latest"
# Ollama's own registry (ollama.com is its newer name): names there drop the host.
_REGISTRY_HOSTS = {"registry.ollama.ai", "ollama.com"}
_LAYER = "application/vnd.ollama.image."
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_MAX_JSON_BYTES = 1 << 20  # manifests, configs and params are a few hundred bytes
_MAX_TEXT_BYTES = 256 << 10  # a SYSTEM prompt
# Layers radis-mlx does not use; the log says so once per model.
_UNUSED = {
    "template": "Ollama's Go template is not translated; the GGUF's own chat template is used",
    "projector": "its vision projector is not used (text only)",
    "adapter": "its LoRA adapter is not applied",
    "messages": "its MESSAGE history is not prepended",
}


@dataclass(frozen=True)
class OllamaModel:
    """One tag of Ollama's store: its name, its GGUF blob and the Modelfile settings radis-mlx uses."""

    name: str  # "llama3.2:3b"; "llama3.2:latest" for the default tag
    blob: Path  # the GGUF (model layer)
    manifest: Path
    params: dict[str, Any]
    system: str | None
    notes: tuple[str, ...] = ()  # what radis-mlx does not use, for the log

    @property
    def short_name(self) -> str | None:
        """The name without ":latest" (Ollama resolves a name without a tag to it); None for other tags."""
        base, _, tag = self.name.rpartition(":")
        return base if tag == DEFAULT_TAG else None


def ollama_models_dir() -> Path:
    """Ollama's models folder: $OLLAMA_MODELS, else ~/.ollama/models (it may not exist)."""
    env = os.environ.get(ENV_MODELS)
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def display_name(host: str, namespace: str, model: str, tag: str) -> str:
    """Ollama's shortest display name for manifests/<host>/<namespace>/<model>/<tag>."""
    if host.lower() in _REGISTRY_HOSTS:
        return f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def ollama_models(root: Path) -> list[OllamaModel]:
    """Every model tag in an Ollama store whose GGUF blob is there, in name order."""
    manifests = root / "manifests"
    found: list[OllamaModel] = []
    for path in sorted(manifests.glob("*/*/*/*")):
        if path.name.startswith(".") or not path.is_file():
            continue
        stat = path.stat()
        model = _read_manifest(path, root, stat.st_mtime_ns, stat.st_size)
        if model is not None and model.blob.is_file() and is_gguf(model.blob):
            found.append(model)
    return found


@functools.lru_cache(maxsize=1024)
def _read_manifest(path: Path, root: Path, mtime_ns: int, size: int) -> OllamaModel | None:
    """A manifest as an OllamaModel; None (logged once per file version) when it cannot be served."""
    host, namespace, model, tag = path.relative_to(root / "manifests").parts
    name = display_name(host, namespace, model, tag)
    try:
        return _parse(path, root, name)
    except _NotServed as reason:
        log.info("Ollama model %s is not served: %s", name, reason)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("skipping Ollama manifest %s: %s", path, exc or type(exc).__name__)
    return None


class _NotServed(Exception):
    """A well-formed manifest of a kind radis-mlx does not serve (a cloud stub, safetensors)."""


def _parse(path: Path, root: Path, name: str) -> OllamaModel:
    manifest = _json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise ValueError("not an Ollama manifest (no layers)")
    layers: dict[str, list[Path]] = {}
    for layer in manifest["layers"]:
        kind = str(layer["mediaType"]).removeprefix(_LAYER)
        layers.setdefault(kind, []).append(_blob(root, layer["digest"]))
    config = manifest.get("config")
    settings = _json(_blob(root, config["digest"])) if isinstance(config, dict) else {}
    if isinstance(settings, dict) and settings.get("remote_host"):
        raise _NotServed("a cloud model (no weights on this machine)")
    if isinstance(settings, dict) and settings.get("model_format") == "safetensors":
        raise _NotServed("a safetensors model for Ollama's own engine")
    if "model" not in layers:
        raise _NotServed("no GGUF model layer")
    params = _json(layers["params"][0]) if "params" in layers else {}
    if not isinstance(params, dict):
        raise ValueError("the params layer is not a JSON object")
    system = _text(layers["system"][0]) if "system" in layers else None
    notes = tuple(note for kind, note in _UNUSED.items() if kind in layers)
    return OllamaModel(name, layers["model"][0], path, params, system or None, notes)


def _blob(root: Path, digest: object) -> Path:
    """The blob for a digest; anything but sha256:<64 hex> is refused (no path leaves blobs/)."""
    match = _DIGEST.match(str(digest))
    if match is None:
        raise ValueError(f"bad layer digest {str(digest)[:80]!r}")
    return root / "blobs" / f"sha256-{match[1]}"


def _json(path: Path) -> Any:
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise ValueError(f"{path.name} is too large for a manifest or settings layer")
    return json.loads(path.read_bytes())


def _text(path: Path) -> str:
    if path.stat().st_size > _MAX_TEXT_BYTES:
        raise ValueError(f"{path.name} is too large for a system prompt")
    return path.read_text(encoding="utf-8")
