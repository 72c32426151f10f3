"""Discovery (an HF cache laid out as huggingface_hub does, GGUF folders), estimates, what `rm` deletes."""

from __future__ import annotations

import json
import struct
import time

import msgspec
import pytest

from radis_mlx.config import Config, ModelEntry, PoolSettings, ServerSettings
from radis_mlx.errors import ConflictError, InvalidRequestError, ModelLoadError
from radis_mlx.pool import ModelPool, ModelState
from radis_mlx.pool.budget import estimate, kv_cache_bytes
from tests.support.hub import offline_hub

pytestmark = pytest.mark.anyio

LLAMA_CONFIG = {
    "model_type": "llama",
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "hidden_size": 512,
    "max_position_embeddings": 4096,
    "quantization": {"bits": 4, "group_size": 64},
}


def hub_repo(hub, repo_id, files):
    """A repo in the layout huggingface_hub writes: blobs, snapshots/<rev>/ links, refs/main."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "blobs").mkdir()
    for name, content in files.items():
        blob = repo / "blobs" / f"blob-{name}"
        blob.write_bytes(content)
        (snapshot / name).symlink_to(blob)
    return repo


def gguf_file(path, layers=2, context=1024):
    def kv(key, kind, value):
        packed = struct.pack("<I", kind) + (
            struct.pack("<Q", len(value)) + value.encode() if kind == 8 else struct.pack("<I", value)
        )
        return struct.pack("<Q", len(key)) + key.encode() + packed

    fields = [
        kv("general.architecture", 8, "llama"),
        kv("llama.block_count", 4, layers),
        kv("llama.attention.head_count", 4, 4),
        kv("llama.attention.head_count_kv", 4, 2),
        kv("llama.embedding_length", 4, 256),
        kv("llama.context_length", 4, context),
        kv("general.file_type", 4, 2),
    ]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(fields)) + b"".join(fields) + b"\0" * 1000)
    return path


def make_pool(tmp_path, models=None, **pool):
    config = Config(
        server=ServerSettings(cache_dir=str(tmp_path / "cache")),
        pool=PoolSettings(**pool),
        models=models or {},
        base_dir=str(tmp_path),
    )
    return ModelPool(config, discover_models=True, factory=None)


def test_mlx_repos_in_the_hf_cache_and_gguf_folders_are_discovered(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    offline_hub(monkeypatch, hub)
    hub_repo(
        hub,
        "mlx-community/Tiny-4bit",
        {"config.json": json.dumps(LLAMA_CONFIG).encode(), "m.safetensors": b"x" * 100},
    )
    hub_repo(hub, "org/not-a-model", {"README.md": b"hi"})
    (tmp_path / "ggufs").mkdir()
    gguf_file(tmp_path / "ggufs" / "tiny-q4.gguf")
    pool = make_pool(tmp_path, model_dirs=["ggufs"])
    slots = {s.model_id: s for s in pool.slots()}
    assert set(slots) == {"mlx-community/Tiny-4bit", "tiny-q4"}
    assert slots["mlx-community/Tiny-4bit"].origin == "hf-cache" and slots["tiny-q4"].origin == "model-dir"
    facts = pool.catalog.facts(slots["tiny-q4"])
    assert facts.format == "gguf" and facts.arch == "llama" and facts.quantization == "Q4_0"
    assert pool.catalog.facts(slots["mlx-community/Tiny-4bit"]).quantization == "4bit"


def test_discovery_is_off_when_configured_off(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    offline_hub(monkeypatch, hub)
    hub_repo(hub, "mlx-community/Tiny-4bit", {"config.json": b"{}", "m.safetensors": b"x"})
    assert make_pool(tmp_path, discover_hf_cache=False).slots() == []


def test_estimates_add_the_kv_cache_for_the_configured_context(tmp_path):
    path = gguf_file(tmp_path / "m.gguf", layers=2, context=1024)
    assert estimate(path, None).kv_cache == kv_cache_bytes(2, 2, 64, 1024) == 2 * 2 * 2 * 64 * 1024 * 2
    assert estimate(path, 4096).kv_cache == 4 * estimate(path, None).kv_cache
    assert estimate(path, None, embedding=True).kv_cache == 0
    folder = tmp_path / "mlx"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    (folder / "model.safetensors").write_bytes(b"x" * 1234)
    assert estimate(folder, 100) == type(estimate(folder, 100))(1234, kv_cache_bytes(4, 2, 64, 100))


async def test_rm_deletes_the_hf_repo_folder_only_and_never_a_loaded_model(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    offline_hub(monkeypatch, hub)
    files = {"config.json": json.dumps(LLAMA_CONFIG).encode(), "m.safetensors": b"x"}
    repo = hub_repo(hub, "mlx-community/Tiny-4bit", files)
    other = hub_repo(hub, "mlx-community/Other-4bit", files)
    pool = make_pool(tmp_path)
    slot = pool.get("mlx-community/Tiny-4bit")
    slot.state = ModelState.LOADED
    with pytest.raises(ConflictError):
        await pool.catalog.delete("mlx-community/Tiny-4bit")
    slot.state = ModelState.NOT_LOADED
    await pool.catalog.delete("mlx-community/Tiny-4bit")
    assert not repo.exists() and other.exists()
    assert [s.model_id for s in pool.slots()] == ["mlx-community/Other-4bit"]


async def test_rm_refuses_files_outside_the_caches(tmp_path):
    model = gguf_file(tmp_path / "mine.gguf")
    pool = make_pool(tmp_path, {"mine": ModelEntry(source="./mine.gguf")}, discover_hf_cache=False)
    with pytest.raises(InvalidRequestError, match="delete its files yourself"):
        await pool.catalog.delete("mine")
    with pytest.raises(ModelLoadError, match="refusing"):
        pool.store.delete(model, tmp_path / "hub")
    assert model.exists()


def crafted_gguf(path, depth=100_000):
    """A GGUF whose one key holds arrays nested `depth` deep (each level: type array, one item)."""
    key = b"crafted.nested"
    nested = struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 0)
    field = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9) + nested
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + field)
    return path


@pytest.mark.parametrize(
    "body",
    [
        lambda p: crafted_gguf(p),  # arrays nested 100 000 deep: the recursive reader's RecursionError
        lambda p: p.write_bytes(
            b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62)
        ),  # a key past the end
        lambda p: p.write_bytes(  # 2**40 strings promised by a 40-byte file
            b"GGUF"
            + struct.pack("<IQQ", 3, 0, 1)
            + struct.pack("<Q", 1)
            + b"k"
            + struct.pack("<IIQ", 9, 8, 2**40)
        ),
        lambda p: p.write_bytes(b"GGUF"),
    ],
)
def test_a_malformed_gguf_header_is_a_value_error(tmp_path, body):
    from radis_mlx.store.gguf import gguf_metadata

    path = tmp_path / "bad.gguf"
    body(path)
    with pytest.raises((ValueError, struct.error)):
        gguf_metadata(path, arrays=["crafted.nested", "k"])
    with pytest.raises((ValueError, struct.error)):
        gguf_metadata(path)


async def test_a_malformed_gguf_is_left_out_of_listings_with_a_logged_reason(tmp_path, monkeypatch, caplog):
    from click.testing import CliRunner
    from litestar.testing import AsyncTestClient

    from radis_mlx.app import create_app
    from radis_mlx.cli.main import main

    offline_hub(monkeypatch, tmp_path / "hub")
    (tmp_path / "ggufs").mkdir()
    gguf_file(tmp_path / "ggufs" / "good.gguf")
    crafted_gguf(tmp_path / "ggufs" / "crafted.gguf")
    pool = make_pool(tmp_path, model_dirs=["ggufs"])
    assert [s.model_id for s in pool.slots()] == ["good"]
    assert "not listing" in caplog.text and "crafted.gguf" in caplog.text
    config = pool.config
    app = create_app(
        msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, allowed_hosts=["testserver.local"])
        ),
        pool,
    )
    async with AsyncTestClient(app=app) as client:
        for path in ("/v1/models", "/api/v0/models"):
            listing = await client.get(path)
            assert listing.status_code == 200 and [m["id"] for m in listing.json()["data"]] == ["good"]
    toml = tmp_path / "models.toml"
    toml.write_text(f'[server]\ncache_dir = "{tmp_path / "cache"}"\n\n[pool]\nmodel_dirs = ["ggufs"]\n')
    listed = CliRunner().invoke(main, ["ls", "--json", "--config", str(toml)])
    assert listed.exit_code == 0, listed.output
    assert [m["id"] for m in json.loads(listed.output)] == ["good"]


async def test_listings_scan_the_disk_in_a_worker_thread_at_most_every_few_seconds(tmp_path, monkeypatch):
    import threading

    from radis_mlx.pool import catalog

    offline_hub(monkeypatch, tmp_path / "hub")
    (tmp_path / "ggufs").mkdir()
    pool = make_pool(tmp_path, model_dirs=["ggufs"])
    scans: list[str] = []
    real = catalog.discover

    def counted(*args, **kwargs):
        scans.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(catalog, "discover", counted)
    monkeypatch.setattr(catalog, "SCAN_SECONDS", 0.3)
    pool.catalog._scanned = float("-inf")
    gguf_file(tmp_path / "ggufs" / "new.gguf")
    for _ in range(5):
        await pool.refresh_listing()
    assert len(scans) == 1 and scans[0] != threading.main_thread().name
    assert [s.model_id for s in pool.slots()] == ["new"]
    time.sleep(0.35)
    await pool.refresh_listing()
    assert len(scans) == 2


def test_rm_of_a_pypi_folder_deletes_its_gguf_conversions_too(tmp_path):
    pool = make_pool(tmp_path, discover_hf_cache=False)
    folder = pool.store.cache_dir / "pypi" / "pkg" / "pkg" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    converted = pool.store.cache_dir / "bert-gguf"
    converted.mkdir(parents=True)
    (converted / "model-0123456789abcdef.gguf").write_bytes(b"GGUF")
    (converted / "other-0123456789abcdef.gguf").write_bytes(b"GGUF")
    (converted / "model-q4-0123456789abcdef.gguf").write_bytes(b"GGUF")  # another folder's ("model-q4")
    pool.store.delete(folder, tmp_path / "hub")
    assert not folder.exists()
    assert sorted(p.name for p in converted.iterdir()) == [
        "model-q4-0123456789abcdef.gguf",
        "other-0123456789abcdef.gguf",
    ]


def test_discovered_ggufs_with_a_pooling_type_are_embedders_or_rerankers(tmp_path):
    from tests.support.model_homes import gguf_file as gguf_with

    folder = tmp_path / "ggufs"
    gguf_with(folder / "chat.gguf")
    gguf_with(folder / "nomic-embed-text.gguf", arch="nomic-bert", **{"nomic-bert__pooling_type": 1})
    gguf_with(folder / "ms-marco.gguf", arch="bert", bert__pooling_type=4)
    kinds = {s.model_id: s.entry.kind for s in make_pool(tmp_path, model_dirs=["ggufs"]).slots()}
    assert kinds == {"chat": "llm", "nomic-embed-text": "embedding", "ms-marco": "rerank"}
