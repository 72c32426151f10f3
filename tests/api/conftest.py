from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.pool import ModelPool
from tests.support.fakes import FakeEngine


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def client(fake_engine: FakeEngine, tmp_path):
    # The test client's Host; real servers accept only localhost names while bound to loopback.
    server = ServerSettings(allowed_hosts=["testserver.local"])
    config = Config(server=server, models={"fake": ModelEntry(source=str(tmp_path))})

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        await fake_engine.start()
        return fake_engine

    app = create_app(config, ModelPool(config, factory=factory))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client
