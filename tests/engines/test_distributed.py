"""The distributed engine's parts that need no group: config, the strategy check, the Llama pipeline split.

Two- and three-rank groups over the ring backend are tested end to end in tests/e2e/test_distributed.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from radis_mlx.config import ModelEntry
from radis_mlx.engines.distributed.engine import check_strategy, ring_ports
from radis_mlx.engines.mlx.gguf_to_mlx import convert_gguf
from radis_mlx.engines.registry import choose_engine
from radis_mlx.errors import UnsupportedModelError


@pytest.fixture(scope="module")
def folder(smollm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_gguf(smollm_gguf, tmp_path_factory.mktemp("cache"))


def entry(distributed: str) -> ModelEntry:
    return msgspec.toml.decode(f'source = "x.gguf"\ndistributed = {distributed}'.encode(), type=ModelEntry)


def test_an_entry_names_either_a_hostfile_or_a_rank_count() -> None:
    assert entry('{ ranks = 2, strategy = "tensor" }').distributed is not None
    assert entry('{ hosts = "hosts.json" }').distributed is not None
    for bad in ["{ strategy = 'tensor' }", "{ ranks = 2, hosts = 'h.json' }", "{ ranks = 1 }"]:
        with pytest.raises(msgspec.ValidationError, match=r"\$\.distributed"):
            entry(bad)


def test_a_distributed_entry_gets_the_distributed_engine() -> None:
    assert choose_engine(entry("{ ranks = 2 }"), Path("x.gguf"))[0] == "mlx-distributed"


def test_strategies_the_starter_model_can_and_cannot_split(folder: Path) -> None:
    check_strategy(folder, "pipeline", 2)
    check_strategy(folder, "tensor", 3)  # 9 heads, 3 KV heads
    with pytest.raises(UnsupportedModelError, match="num_attention_heads = 9 does not divide by 2"):
        check_strategy(folder, "tensor", 2)
    with pytest.raises(UnsupportedModelError, match="30 layers cannot be split across 31 ranks"):
        check_strategy(folder, "pipeline", 31)


def test_ring_ports_are_consecutive_and_free() -> None:
    import socket

    first = ring_ports(3)
    for port in range(first, first + 3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_llama_pipeline_of_one_rank_is_the_plain_model(folder: Path) -> None:
    """The adapter loads mlx-lm's weights unchanged; a group of one runs every layer locally."""
    import mlx.core as mx
    from mlx_lm.utils import load_model

    from radis_mlx.engines.distributed.pipeline import PipelineLlama
    from radis_mlx.engines.distributed.rank import pipelined_classes

    plain, _ = load_model(folder)
    split, _ = load_model(folder, get_model_classes=pipelined_classes)
    assert isinstance(split, PipelineLlama)
    split.model.pipeline(mx.distributed.init())
    assert len(split.layers) == len(plain.layers) == 30
    tokens = mx.array([[1, 504, 3575, 282, 4649, 314]])
    assert mx.array_equal(split(tokens), plain(tokens)).item()


def test_the_doorbell_survives_silent_short_and_wrong_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0's doorbell listens on the LAN: what strangers send is dropped, its follower still gets in."""
    import socket
    import threading

    from radis_mlx.engines.distributed import doorbell

    monkeypatch.setattr(doorbell, "HANDSHAKE_TIMEOUT", 0.5)
    port = ring_ports(1)
    bell = doorbell.Doorbell("127.0.0.1", port, followers=1, secret="s3cret")
    outcome: list[BaseException | None] = []
    leader = threading.Thread(target=lambda: outcome.append(_catch(bell.wait_for_followers, 20)))
    leader.start()
    silent = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing
    short = socket.create_connection(("127.0.0.1", port))
    short.sendall(b"\0\0\0\1")  # a rank and no proof, then gone
    short.close()
    wrong = socket.create_connection(("127.0.0.1", port))
    wrong.sendall(b"\0\0\0\1" + b"x" * 32)  # a rank and a made-up proof
    impostors: list[doorbell.Bell] = []  # knows the protocol, not the secret
    impostor = threading.Thread(
        target=lambda: impostors.append(doorbell.Bell("127.0.0.1", port, 1, 10, "guess"))
    )
    impostor.start()
    follower = doorbell.Bell("127.0.0.1", port, rank=1, timeout=10, secret="s3cret")
    leader.join(20)
    impostor.join(20)
    assert outcome == [None], outcome  # rank 0 goes on, with its follower
    bell.ring()
    assert follower.wait() is True
    bell.close()
    assert follower.wait() is False  # rank 0 hung up
    assert [i.wait() for i in impostors] == [False]  # hung up on
    for sock in (silent, wrong, follower, *impostors):
        sock.close()


def _catch(call: Any, *args: Any) -> BaseException | None:
    try:
        call(*args)
    except BaseException as exc:
        return exc
    return None


def test_rank_0s_control_api_wants_the_secret() -> None:
    """Only the server (which holds the secret) may use rank 0's loopback API; /health stays open."""
    import queue

    import httpx

    from radis_mlx.engines.distributed.rank import Rank, serve_control

    port = ring_ports(1)
    serve_control(Rank(None, None, None, 16, info={"ranks": 2}), port, queue.SimpleQueue(), "s3cret")
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/health", trust_env=False).status_code == 200
    assert httpx.get(f"{base}/info", trust_env=False).status_code == 401
    assert httpx.post(f"{base}/generate", content=b"[]", trust_env=False).status_code == 401
    assert httpx.post(f"{base}/detokenize", content=b"[1]", trust_env=False).status_code == 401
    wrong = {"Authorization": "Bearer guess"}
    assert httpx.get(f"{base}/info", headers=wrong, trust_env=False).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert httpx.get(f"{base}/info", headers=good, trust_env=False).json() == {"ranks": 2}
