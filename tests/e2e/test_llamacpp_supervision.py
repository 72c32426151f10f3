"""llama.cpp children under supervision: a crash mid-request, recovery, and no orphans on exit."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.support.processes import all_gone
from tests.support.server import STARTER_SOURCE, RunningServer

MODEL = "smollm2-llamacpp"
CONFIG = f'[models.{MODEL}]\nsource = "{STARTER_SOURCE}"\nengine = "llamacpp"\ncontext_length = 2048\n'
LONG = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]


def worker_pids(parent: int) -> list[int]:
    """Live llama.cpp workers whose parent is `parent` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == parent and state != "Z" and b"radis_mlx.engines.llamacpp.server" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def running(tmp_path, smollm_gguf):
    server = RunningServer(CONFIG, tmp_path)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def loaded_child(server: RunningServer, client: OpenAI) -> int:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    pids = worker_pids(server.process.pid)
    assert len(pids) == 1, pids
    return pids[0]


def state_becomes(client: OpenAI, state: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while client.models.retrieve(MODEL).model_extra["state"] != state:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def client(running):
    with OpenAI(base_url=running.url, api_key="x", max_retries=0, timeout=60) as client:
        yield client


def test_child_killed_mid_stream_gives_a_clean_error_then_recovers(running, client):
    child = loaded_child(running, client)
    stream = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=1500, stream=True)
    received = [next(stream) for _ in range(5)]
    assert received[-1].choices[0].delta.content is not None
    os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert time.monotonic() - killed < 1.0
    assert "llama.cpp process" in info.value.message
    assert info.value.body["code"] == "engine_unavailable"
    assert state_becomes(client, "not-loaded", within=1.0)

    reply = client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=4, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 4
    assert client.models.retrieve(MODEL).model_extra["state"] == "loaded"
    restarted = worker_pids(running.process.pid)
    assert len(restarted) == 1 and restarted[0] != child


def test_in_flight_request_gets_503_within_a_second(running, client):
    child = loaded_child(running, client)
    outcome: dict[str, object] = {}

    def ask() -> None:
        try:
            client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=1500, temperature=0)
        except openai.APIStatusError as exc:
            outcome["error"], outcome["at"] = exc, time.monotonic()

    thread = threading.Thread(target=ask)
    thread.start()
    time.sleep(0.5)  # generation is under way
    os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    thread.join(10)
    error = outcome["error"]
    assert isinstance(error, openai.APIStatusError) and error.status_code == 503
    assert error.response.json()["error"]["code"] == "engine_unavailable"
    assert outcome["at"] - killed < 1.0  # type: ignore[operator]


def test_repeated_crashes_back_off(running, client):
    os.kill(loaded_child(running, client), signal.SIGKILL)
    time.sleep(0.2)
    os.kill(loaded_child(running, client), signal.SIGKILL)  # first crash: restarted at once
    time.sleep(0.2)
    with pytest.raises(openai.InternalServerError) as info:  # second in a row: wait before restarting
        client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=1)
    assert info.value.status_code == 503 and "restarts in" in info.value.message
    time.sleep(1.0)
    assert loaded_child(running, client)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_child_outlives_the_server(tmp_path, smollm_gguf, sig):
    server = RunningServer(CONFIG, tmp_path)
    try:
        server.wait_ready()
        with OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
            child = loaded_child(server, client)
        server.process.send_signal(sig)
        server.process.wait(30)
        # SIGTERM: the server stops its children; SIGKILL: the kernel's parent-death signal does.
        assert all_gone([child], 5.0), f"llama.cpp child {child} outlived the server"
    finally:
        server.stop()
    if sig == signal.SIGTERM:
        assert server.process.returncode == 0
