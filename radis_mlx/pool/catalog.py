"""Which models exist: configured entries, their aliases, and models discovered on disk.

Each has one PoolSlot (state.py) holding its runtime state; the pool (pool.py) is the only code that
changes a slot's state.

The disk scan (discovery, and each model's file facts) runs in a worker thread for listings, at most
every SCAN_SECONDS (the dashboard polls every 2 s), and at once after a pull or a delete; between
scans listings answer from what the last one found.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radis_mlx.config import ENCODER_KINDS, Config
from radis_mlx.engines.registry import reads_images
from radis_mlx.errors import ConflictError, InvalidRequestError, ModelNotFoundError, RadisError
from radis_mlx.pool.budget import FileFacts, file_facts
from radis_mlx.pool.discovery import ORIGINS, Discovered, discover, hf_cache_dir
from radis_mlx.pool.state import ModelState, PoolSlot
from radis_mlx.store.lmstudio import lmstudio_models_folders
from radis_mlx.store.metadata import model_metadata
from radis_mlx.store.ollama import ollama_models_dir
from radis_mlx.store.sources import ModelStore, Progress, is_remote_source, parse_source
from radis_mlx.store.vision import find_projector

log = logging.getLogger(__name__)
# Where other apps' models live: `rm` points there instead of deleting.
_OWNERS = {"lmstudio": "delete it in LM Studio", "ollama": "use `ollama rm {id}`"}

SCAN_SECONDS = 5.0  # a listing rescans the disk at most this often


@dataclass
class Scan:
    """What one look at the disk found: discovered models (None: discovery is off) and file facts."""

    found: dict[str, Discovered] | None
    facts: dict[str, FileFacts | None]


class Catalog:
    """Model ids (and aliases) → slots; configured models first, then discovered ones."""

    def __init__(self, config: Config, store: ModelStore, *, discover: bool) -> None:
        self.config = config
        self.store = store
        self._discover = discover
        self._slots = {model_id: PoolSlot(model_id, entry) for model_id, entry in config.models.items()}
        self._aliases = {a: m for m, e in config.models.items() for a in e.aliases if a not in self._slots}
        self._facts: dict[str, FileFacts | None] = {}
        self._scanned = float("-inf")
        self._scanning: asyncio.Future[None] | None = None
        self._found_aliases: dict[str, str] = {}  # discovered models' other names ("llama3.2" for ":latest")
        self.refresh()

    def slots(self) -> list[PoolSlot]:
        """Every servable model: configured ones first, then discovered ones."""
        return list(self._slots.values())

    def get(self, model_id: str) -> PoolSlot:
        """The slot for a model id or alias; 404 for ids we do not serve."""
        slot = self._lookup(model_id)
        if slot is None:
            raise ModelNotFoundError(model_id)
        return slot

    def _lookup(self, name: str) -> PoolSlot | None:
        alias = self._aliases.get(name) or self._found_aliases.get(name, "")
        return self._slots.get(name) or self._slots.get(alias)

    def refresh(self) -> None:
        """Scan the disk now (blocking): add models that appeared, drop discovered ones whose files are
        gone (unless loaded), re-read file facts."""
        self._apply(self._scan(self.slots()))

    async def refresh_listing(self) -> None:
        """Bring a listing up to date: a scan in a worker thread if the last is over SCAN_SECONDS old."""
        if self._scanning is None:
            if time.monotonic() - self._scanned < SCAN_SECONDS:
                return
            self._scanning = asyncio.ensure_future(self._rescan())
        await asyncio.shield(self._scanning)

    async def rescan(self) -> None:
        """Scan now, in a worker thread (after a pull or a delete)."""
        if self._scanning is not None:
            await asyncio.shield(self._scanning)
        self._scanned = float("-inf")
        await self.refresh_listing()

    async def _rescan(self) -> None:
        try:
            self._apply(await asyncio.to_thread(self._scan, self.slots()))
        except Exception:  # an unreadable folder: the listing keeps what the last scan found
            log.exception("scanning for models failed")
            self._scanned = time.monotonic()
        finally:
            self._scanning = None

    def _scan(self, slots: list[PoolSlot]) -> Scan:
        """Discovery and file facts: file-system reads only, safe in a worker thread."""
        found: dict[str, Discovered] | None = None
        if self._discover:
            pool = self.config.pool
            configured = {self._configured_path(e.source) for e in self.config.models.values()}
            found = {
                d.model_id: d
                for d in discover(
                    self.model_dirs(),
                    self.config.cache_dir,
                    hf_cache_dir() if pool.discover_hf_cache else None,
                    lmstudio=lmstudio_models_folders() if pool.discover_lmstudio else [],
                    ollama=ollama_models_dir() if pool.discover_ollama else None,
                )
                if d.path.resolve() not in configured  # one model file is served under one id
            }
        facts = {slot.model_id: self._read_facts(slot) for slot in slots}
        for item in (found or {}).values():
            facts.setdefault(item.model_id, file_facts(item.path))
        return Scan(found, facts)

    def _apply(self, scan: Scan) -> None:
        self._facts = scan.facts
        self._scanned = time.monotonic()
        if scan.found is None:
            return
        for model_id, slot in list(self._slots.items()):
            if slot.discovered and model_id not in scan.found and slot.state is ModelState.NOT_LOADED:
                del self._slots[model_id]
        for model_id, item in scan.found.items():
            if model_id not in self._slots and model_id not in self._aliases:
                self._slots[model_id] = PoolSlot(model_id, item.entry, origin=item.origin, discovered=item)
                for note in item.notes:
                    log.info("%s (from %s): %s", model_id, ORIGINS[item.origin], note)
        self._found_aliases = {
            alias: slot.model_id
            for slot in self._slots.values()
            if slot.discovered is not None
            for alias in slot.entry.aliases
            if alias not in self._slots and alias not in self._aliases
        }

    def model_dirs(self) -> list[Path]:
        """[pool] model_dirs, relative to the config's folder."""
        return [Path(self.config.base_dir) / Path(d).expanduser() for d in self.config.pool.model_dirs]

    def path_of(self, slot: PoolSlot) -> Path | None:
        """The model's local files, if they need no download."""
        if slot.discovered is not None:
            return slot.discovered.path
        try:
            return self.store.cached_path(slot.entry.source)
        except RadisError:
            return None

    def input_modalities(self, slot: PoolSlot) -> list[str]:
        """What the model reads: its engine's say once loaded, else what its entry and files imply."""
        if slot.engine is not None:
            return list(slot.engine.input_modalities)
        entry = slot.entry
        path = self.path_of(slot) if entry.kind not in ENCODER_KINDS else None
        if path is None:
            return ["text", "image"] if entry.kind == "vlm" else ["text"]
        projector = entry.mmproj or find_projector(path)
        return ["text", "image"] if reads_images(entry, path, projector) else ["text"]

    def facts(self, slot: PoolSlot) -> FileFacts | None:
        """Format, architecture, quantization and size from the files (None before a download), as the
        last scan read them."""
        if slot.model_id not in self._facts:
            self._facts[slot.model_id] = self._read_facts(slot)
        return self._facts[slot.model_id]

    def _read_facts(self, slot: PoolSlot) -> FileFacts | None:
        path = self.path_of(slot)
        return file_facts(path) if path is not None else None

    def metadata(self, slot: PoolSlot) -> dict[str, Any]:
        """GGUF-style key/values of the model's files (Ollama's model_info); {} before a download."""
        path = self.path_of(slot)
        return model_metadata(path) if path is not None else {}

    async def pull(
        self, name: str, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> tuple[str, Path]:
        """Download a model id's source, or a source string, into the caches; (model id, path).

        Setting `cancel` stops the download (its client left); loads of other models go on meanwhile.
        """
        slot, source = self.pull_source(name)
        path = await asyncio.to_thread(self.store.materialize, source, progress, cancel)
        await self.rescan()
        if slot is not None:
            return slot.model_id, path
        found = next((s for s in self.slots() if s.discovered and s.discovered.path == path), None)
        return (found.model_id if found else name), path

    def pull_source(self, name: str) -> tuple[PoolSlot | None, str]:
        """The slot and source a pull of `name` downloads; 404 for neither an id nor a remote source."""
        slot = self._lookup(name)
        if slot is not None:
            return slot, slot.entry.source
        if not is_remote_source(name):  # never a path: a pull only downloads
            raise ModelNotFoundError(name)
        try:
            parse_source(name, Path(self.config.base_dir))
        except RadisError as exc:
            raise InvalidRequestError(exc.message, param="model") from None
        return None, name

    async def delete(self, model_id: str) -> PoolSlot:
        """Delete a model's cached files (never while loaded, never files outside the caches)."""
        slot = self.get(model_id)
        if slot.origin in _OWNERS:  # loaded or not: another app's files are never ours to delete
            path = slot.discovered.path if slot.discovered else ""
            how = _OWNERS[slot.origin].format(id=slot.model_id)
            raise InvalidRequestError(
                f"'{slot.model_id}' belongs to {ORIGINS[slot.origin]} ({path}): "
                f"radis-mlx never deletes another app's models; {how}",
                param="model",
                code="model_not_deletable",
            )
        if slot.state is not ModelState.NOT_LOADED:
            raise ConflictError(f"'{slot.model_id}' is {slot.state.value}; unload it first", param="model")
        owned = self.owned_path(slot)
        if owned is None:
            raise InvalidRequestError(
                f"'{slot.model_id}' is not in a cache radis-mlx manages (or not downloaded); "
                "delete its files yourself",
                param="model",
                code="model_not_deletable",
            )
        await asyncio.to_thread(self.store.delete, owned, hf_cache_dir())
        await self.rescan()
        return slot

    def owned_path(self, slot: PoolSlot) -> Path | None:
        """The files `rm` may delete for a model: its HF cache repo folder or its entry in our cache."""
        if slot.discovered is not None:
            return slot.discovered.owned
        parsed = parse_source(slot.entry.source, Path(self.config.base_dir))
        if parsed.scheme == "pypi":
            return self.store.cached_path(slot.entry.source)
        if parsed.scheme == "hf":
            repo = hf_cache_dir() / ("models--" + parsed.location.replace("/", "--"))
            return repo if repo.exists() else None
        return None  # a local path the user manages

    def _configured_path(self, source: str) -> Path | None:
        try:
            path = self.store.cached_path(source)
        except RadisError:
            return None  # an invalid source fails when it is used, not at startup
        return path.resolve() if path is not None else None
