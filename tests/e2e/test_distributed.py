"""A model sharded across mx.distributed ranks (ring backend on loopback, MLX on the CPU).

The starter model (SmolLM2-135M: 30 layers, 9 attention heads, 3 KV heads) splits by pipeline over
2 ranks; tensor parallelism splits heads evenly, so it runs over 3 ranks here, and 2 tensor ranks are
refused with a 400 before anything starts. Outputs are compared with the single-process MLX engine
serving the same files in the same server.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support.errors import error_of
from tests.support.processes import all_gone
from tests.support.server import STARTER_SOURCE, RunningServer

PIPELINE, TENSOR, TENSOR_2 = "smollm2-pipeline", "smollm2-tensor", "smollm2-tensor-2"
CONFIG = f"""
[models.smollm2-mlx]
source = "{STARTER_SOURCE}"
engine = "mlx"
context_length = 2048

[models.{PIPELINE}]
source = "{STARTER_SOURCE}"
context_length = 2048
distributed = {{ ranks = 2, strategy = "pipeline" }}

[models.{TENSOR}]
source = "{STARTER_SOURCE}"
context_length = 2048
distributed = {{ ranks = 3, strategy = "tensor" }}

[models.{TENSOR_2}]
source = "{STARTER_SOURCE}"
distributed = {{ ranks = 2, strategy = "tensor" }}
"""
PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "Name three colors."}]


def group_pids(client: OpenAI, model: str) -> tuple[int, list[int]]:
    """The launcher's pid and every rank's, as /v1/models reports them."""
    details = client.models.retrieve(model).model_extra["details"]
    return int(details["pid"]), [int(pid) for pid in details["rank_pids"].split(",")]


def state_becomes(client: OpenAI, model: str, state: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while client.models.retrieve(model).model_extra["state"] != state:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def running(tmp_path_factory, smollm_gguf) -> Iterator[RunningServer]:
    server = RunningServer(CONFIG, tmp_path_factory.mktemp("distributed"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(running) -> Iterator[OpenAI]:
    with OpenAI(base_url=running.url, api_key="x", max_retries=0, timeout=600) as client:
        yield client


def completion(client: OpenAI, model: str, max_tokens: int = 8) -> tuple[str, str | None, int]:
    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=max_tokens, temperature=0)
    assert reply.usage is not None
    return reply.choices[0].text, reply.choices[0].finish_reason, reply.usage.completion_tokens


@pytest.mark.parametrize("model", [PIPELINE, TENSOR])
def test_greedy_output_is_the_single_process_output(client, model):
    single = completion(client, "smollm2-mlx")
    assert single[0].strip(), "the reference produced no text"
    assert completion(client, model) == single


def test_chat_and_streaming_match_the_single_process_engine(client):
    def chat(model: str) -> str:
        reply = client.chat.completions.create(model=model, messages=CHAT, max_tokens=8, temperature=0)
        return reply.choices[0].message.content or ""

    expected = chat("smollm2-mlx")
    assert chat(PIPELINE) == expected
    stream = client.chat.completions.create(
        model=PIPELINE,
        messages=CHAT,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1, "the reply did not arrive as a stream"
    assert "".join(pieces) == expected
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_stop_strings_and_seeded_sampling(client):
    text = completion(client, PIPELINE, max_tokens=8)[0]
    cut = text[: max(1, len(text) // 2)]
    stop = text[len(cut) :][:2]
    reply = client.completions.create(model=PIPELINE, prompt=PROMPT, max_tokens=8, temperature=0, stop=[stop])
    assert reply.choices[0].finish_reason == "stop" and stop not in reply.choices[0].text

    def sample() -> str:
        return (
            client.completions.create(model=PIPELINE, prompt=PROMPT, max_tokens=6, temperature=1.0, seed=7)
            .choices[0]
            .text
        )

    assert sample() == sample()


def test_bad_requests_are_openai_errors_and_leave_the_group_serving(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=PIPELINE, prompt=[[1, 2, 10**6]], max_tokens=2)
    assert error_of(info.value)["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as info:
        # A max_tokens past the room is clamped (as llama-server does); a prompt past the context is not.
        client.completions.create(model=PIPELINE, prompt="word " * 2100, max_tokens=1)
    assert error_of(info.value)["code"] == "context_length_exceeded"
    assert completion(client, PIPELINE, max_tokens=2)[2] == 2


def test_tensor_split_that_does_not_divide_the_heads_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=TENSOR_2, prompt=PROMPT, max_tokens=2)
    error = error_of(info.value)
    assert error["code"] == "unsupported_model" and "num_attention_heads = 9" in error["message"]
    assert client.models.retrieve(TENSOR_2).model_extra["state"] == "not-loaded"


def test_models_and_management_api_show_the_group(running, client):
    completion(client, PIPELINE, max_tokens=1)
    described = client.models.retrieve(PIPELINE).model_extra
    assert described["engine"] == "mlx-distributed" and described["state"] == "loaded"
    details = described["details"]
    assert details["strategy"] == "pipeline" and details["hosts"] == "127.0.0.1,127.0.0.1"
    weights = [int(b) for b in details["rank_weight_bytes"].split(",")]
    assert len(weights) == 2 and all(b > 0 for b in weights) and described["size_bytes"] == sum(weights)
    loaded = httpx.get(f"{running.base}/api/v0/models/loaded").json()["data"]
    mine = next(m for m in loaded if m["id"] == PIPELINE)
    assert mine["details"]["rank_pids"] == details["rank_pids"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_group_uses_no_cpu(client):
    """Between requests the followers wait on rank 0's doorbell, not in a polling collective, and
    mlx.launch waits on its pipes (each used to keep about a core busy)."""
    completion(client, PIPELINE, max_tokens=1)
    launcher, ranks = group_pids(client, PIPELINE)
    time.sleep(0.5)
    before = {pid: cpu_seconds(pid) for pid in [launcher, *ranks]}
    time.sleep(3)
    used = {pid: cpu_seconds(pid) - spent for pid, spent in before.items()}
    assert sum(used.values()) < 0.3, used  # CPU seconds in 3 s, all processes of the group together
    assert completion(client, PIPELINE, max_tokens=2)[2] == 2  # the rung followers still follow


def kill_follower_then_recover(client: OpenAI, during) -> openai.APIError:
    """Kill rank 1 while `during` has a request under way; the error it raised; then check recovery."""
    completion(client, PIPELINE, max_tokens=1)
    launcher, ranks = group_pids(client, PIPELINE)
    with pytest.raises(openai.APIError) as info:
        during(lambda: os.kill(ranks[1], signal.SIGKILL))
    assert state_becomes(client, PIPELINE, "not-loaded", within=10)
    assert all_gone([launcher, *ranks], timeout=10), "a rank of the dead group is still running"
    assert recovered(client)[2] == 2
    new_launcher, new_ranks = group_pids(client, PIPELINE)
    assert new_launcher != launcher and not set(new_ranks) & set(ranks)
    return info.value


def recovered(client: OpenAI) -> tuple[str, str | None, int]:
    """The next request, past the pool's crash backoff (1 s after a second crash within a minute)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return completion(client, PIPELINE, max_tokens=2)
        except openai.InternalServerError as exc:
            if "restarts in" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_killed_follower_ends_a_stream_with_an_error_then_the_group_restarts(client):
    def streaming(kill) -> None:
        with client.chat.completions.create(
            model=PIPELINE, messages=CHAT, max_tokens=200, stream=True
        ) as stream:
            next(stream)  # generation is under way on both ranks
            kill()
            for _ in stream:
                pass

    error = kill_follower_then_recover(client, streaming)
    assert error.body["code"] == "engine_unavailable"


def test_killed_follower_gives_in_flight_requests_a_503(running, client):
    def waiting(kill) -> None:
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(client.chat.completions.create, model=PIPELINE, messages=CHAT, max_tokens=200)
            while not any(
                m["active_requests"] for m in httpx.get(f"{running.base}/api/v0/models/loaded").json()["data"]
            ):
                time.sleep(0.05)
            kill()
            reply.result()

    error = kill_follower_then_recover(client, waiting)
    assert isinstance(error, openai.APIStatusError) and error.status_code == 503
    assert error_of(error)["code"] == "engine_unavailable"


def test_unload_and_shutdown_leave_no_process(tmp_path, smollm_gguf):
    server = RunningServer(CONFIG, tmp_path)
    try:
        server.wait_ready()
        with OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=600) as client:
            completion(client, PIPELINE, max_tokens=1)
            launcher, ranks = group_pids(client, PIPELINE)
            unloaded = httpx.post(f"{server.base}/api/v0/models/unload", json={"model": PIPELINE})
            assert unloaded.status_code == 200
            assert all_gone([launcher, *ranks], timeout=10), "unload left a rank running"

            completion(client, PIPELINE, max_tokens=1)
            launcher, ranks = group_pids(client, PIPELINE)
        server.process.send_signal(signal.SIGKILL)  # no clean shutdown: the ranks must notice by themselves
        server.process.wait(30)
        assert all_gone([launcher, *ranks], timeout=15), "a rank outlived the killed server"
    finally:
        server.stop()
