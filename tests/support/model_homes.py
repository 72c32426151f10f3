"""Other apps' model folders laid out as they write them: tiny GGUF headers, LM Studio, Ollama's store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_PARAMS = "application/vnd.ollama.image.params"
OLLAMA_SYSTEM = "application/vnd.ollama.image.system"
OLLAMA_TEMPLATE = "application/vnd.ollama.image.template"
OLLAMA_PROJECTOR = "application/vnd.ollama.image.projector"


def gguf_file(
    path: Path, arch: str = "llama", layers: int = 2, context: int = 1024, **extra: str | int
) -> Path:
    """A GGUF header (no tensors) with an architecture, its shape and any further keys (`a__b`: `a.b`)."""

    def kv(key: str, kind: int, value: Any) -> bytes:
        packed = struct.pack("<I", kind) + (
            struct.pack("<Q", len(value)) + value.encode() if kind == 8 else struct.pack("<I", value)
        )
        return struct.pack("<Q", len(key)) + key.encode() + packed

    fields = [
        kv("general.architecture", 8, arch),
        kv(f"{arch}.block_count", 4, layers),
        kv(f"{arch}.attention.head_count", 4, 4),
        kv(f"{arch}.attention.head_count_kv", 4, 2),
        kv(f"{arch}.embedding_length", 4, 256),
        kv(f"{arch}.context_length", 4, context),
        kv("general.file_type", 4, 2),
        *(
            kv(key.replace("__", "."), 4 if isinstance(value, int) else 8, value)
            for key, value in extra.items()
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(fields)) + b"".join(fields) + b"\0" * 1000)
    return path


def link_or_copy(source: Path, target: Path) -> Path:
    """A model file placed where another app keeps it: a hard link (no copy of the weights) where possible.

    Not a symlink: a symlink resolves to the original, and one file is served under one id only.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)
    return target


class OllamaStore:
    """~/.ollama/models: content-addressed blobs and manifests/<host>/<namespace>/<model>/<tag>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def blob(self, content: bytes | None = None, *, file: Path | None = None) -> tuple[str, int]:
        """Store a layer (bytes, or a file linked in by its digest); its digest and size."""
        data = content if content is not None else Path(file or "").read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.root / "blobs" / digest.replace(":", "-")
        if not target.exists():
            if file is not None:
                link_or_copy(file, target)
            else:
                target.write_bytes(data)
        return digest, len(data)

    def add(
        self,
        name: str,
        gguf: Path,
        *,
        params: dict[str, Any] | None = None,
        system: str | None = None,
        template: str | None = None,
        config: dict[str, Any] | None = None,
        host: str = "registry.ollama.ai",
        namespace: str = "library",
    ) -> Path:
        """A model tag ("llama3.2:3b") as `ollama pull` leaves it; the manifest's path."""
        model, _, tag = name.partition(":")
        layers = [self._layer(OLLAMA_MODEL, file=gguf)]
        if template is not None:
            layers.append(self._layer(OLLAMA_TEMPLATE, template.encode()))
        if system is not None:
            layers.append(self._layer(OLLAMA_SYSTEM, system.encode()))
        if params is not None:
            layers.append(self._layer(OLLAMA_PARAMS, json.dumps(params).encode()))
        settings = {"model_format": "gguf", "model_family": "llama", **(config or {})}
        digest, size = self.blob(json.dumps(settings).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest,
                "size": size,
            },
            "layers": layers,
        }
        path = self.root / "manifests" / host / namespace / model / (tag or "latest")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))
        return path

    def _layer(self, media_type: str, content: bytes | None = None, *, file: Path | None = None) -> dict:
        digest, size = self.blob(content, file=file)
        return {"mediaType": media_type, "digest": digest, "size": size}
