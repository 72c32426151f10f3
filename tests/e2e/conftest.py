"""One real server for the end-to-end suite, serving the starter model on every engine."""

from __future__ import annotations

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
