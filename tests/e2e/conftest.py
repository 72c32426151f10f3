"""One real server for the end-to-end suite, serving the starter model on every engine."""

from __future__ import annotations

import os

import pytest
from openai import OpenAI

from tests.support.e2e import ENGINES, MINILM_GGUF, TINY_RERANKER, build_vision_models, e2e_config
from tests.support.server import RunningServer
from tests.support.tiny_reranker import make_tiny_reranker


@pytest.fixture(scope="session")
def server(tmp_path_factory, smollm_gguf, minilm_gguf, minilm_dir):
    workdir = tmp_path_factory.mktemp("server")
    (workdir / "garbage.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    build_vision_models(workdir)
    (workdir / MINILM_GGUF).symlink_to(minilm_gguf)
    make_tiny_reranker(workdir / TINY_RERANKER, minilm_dir)
    running = RunningServer(e2e_config(), workdir).wait_ready()
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.log_tail()}"


@pytest.fixture(scope="session")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url, api_key="anything", max_retries=0, timeout=300)


@pytest.fixture(params=ENGINES)
def model(request) -> str:
    return f"smollm2-{request.param}"


# Files about the API layers above the engines (wire formats, tool-call parsing, error shapes, Ollama's and
# Anthropic's translation: api/, schemas/, generation/): their MLX variants repeat engine-neutral code at
# this CPU's ~10 tok/s, so the default run (CI's, on 2 cores) runs them on llama.cpp only. MLX's own paths
# (templates, sampling, logprobs, grammars, stops, FIM, batching, the prompt cache, images, embeddings) keep
# their MLX variants in the other files. RADIS_TESTS_FULL=1 runs every file on both engines.
API_LAYER_FILES = {f"test_{name}.py" for name in ("tools", "responses", "messages", "errors", "ollama")}


def _on_mlx(item: pytest.Item) -> bool:
    params = getattr(item, "callspec", None)
    values = params.params.values() if params is not None else ()
    return any(isinstance(v, str) and (v == "mlx" or v.endswith("-mlx")) for v in values)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RADIS_TESTS_FULL") == "1":
        return
    layer = [i for i in items if i.path.name in API_LAYER_FILES and _on_mlx(i)]
    if layer:
        config.hook.pytest_deselected(items=layer)
        items[:] = [i for i in items if i not in layer]
