"""Security defaults on the real server: API keys, content types, Host checks, body size, CORS."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import httpx
import openai
import psutil
import pytest
from openai import OpenAI

from tests.support.server import STARTER_SOURCE, RunningServer

CONFIG = f"""
[server]
send_timeout = 2
send_buffer_kib = 8

[models.smollm2-mlx]
source = "{STARTER_SOURCE}"
engine = "mlx"
context_length = 2048

[models.smollm2-llamacpp]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048
"""
# A proxy that answers nothing: nothing the server sends to its children on loopback may go through it.
DEAD_PROXY = {
    name: "http://127.0.0.1:9"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
} | {"NO_PROXY": "", "no_proxy": ""}


@pytest.fixture(scope="module")
def locked(tmp_path_factory, smollm_gguf):
    workdir = tmp_path_factory.mktemp("locked")
    (workdir / "keys.txt").write_text("# keys kept out of argv\nclé-quatre\n")
    server = RunningServer(
        CONFIG,
        workdir,
        extra_args=(
            "--api-key",
            "key-one",
            "--api-key-file",
            str(workdir / "keys.txt"),
            "--cors",
            "http://app.example",
        ),
        env={"RADIS_API_KEY": "key-two,key-three", **DEAD_PROXY},
    ).wait_ready()
    yield server
    assert server.stop() == 0, server.log_tail()


def test_sdk_with_a_key_works_and_without_is_401(locked):
    with OpenAI(base_url=locked.url, api_key="key-three", max_retries=0) as good:
        reply = good.chat.completions.create(
            model="smollm2-mlx", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert reply.choices[0].message.content is not None
    for key in ("wrong", "key-on", "key-one-and-more"):
        with (
            OpenAI(base_url=locked.url, api_key=key, max_retries=0) as bad,
            pytest.raises(openai.AuthenticationError) as info,
        ):
            bad.models.list()
        assert info.value.response.json()["error"]["type"] == "authentication_error"


def test_x_api_key_header_and_open_health(locked):
    assert httpx.get(f"{locked.url}/models", headers={"x-api-key": "key-one"}).status_code == 200
    assert httpx.get(f"{locked.url}/models").status_code == 401
    assert httpx.get(f"{locked.base}/health").status_code == 200


def test_cross_site_bodies_are_refused(locked):
    auth = {"authorization": "Bearer key-one"}
    body = '{"model": "smollm2-mlx", "messages": [{"role": "user", "content": "hi"}]}'
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        response = httpx.post(
            f"{locked.url}/chat/completions", content=body, headers={**auth, "content-type": content_type}
        )
        assert response.status_code == 415, content_type
        assert response.json()["error"]["code"] == "unsupported_media_type"


def test_dns_rebinding_host_is_refused(locked):
    response = httpx.get(
        f"{locked.url}/models", headers={"host": "attacker.example:1234", "x-api-key": "key-one"}
    )
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    ok = httpx.get(
        f"{locked.url}/models", headers={"host": f"localhost:{locked.port}", "x-api-key": "key-one"}
    )
    assert ok.status_code == 200


def test_oversized_body_is_413(locked):
    huge = b'{"model": "smollm2-mlx", "prompt": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{locked.url}/completions",
        content=huge,
        headers={"x-api-key": "key-one", "content-type": "application/json"},
    )
    assert response.status_code == 413 and "error" in response.json()


def test_cors_only_for_the_configured_origin(locked, server):
    preflight = {"origin": "http://app.example", "access-control-request-method": "POST"}
    allowed = httpx.options(f"{locked.url}/chat/completions", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == "http://app.example"
    other = httpx.options(
        f"{locked.url}/chat/completions", headers={**preflight, "origin": "http://evil.example"}
    )
    assert other.headers.get("access-control-allow-origin") != "http://evil.example"
    # The default server (no --cors) sends no CORS headers at all.
    default = httpx.get(f"{server.url}/models", headers={"origin": "http://app.example"})
    assert "access-control-allow-origin" not in default.headers


def listening_ports(pid: int) -> list[int]:
    """The TCP ports a process listens on (a llama.cpp child: its HTTP port)."""
    return [
        c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN
    ]


def test_the_llamacpp_child_is_no_side_door(server, client):
    """Whoever finds the child's port (in `ps`, or by scanning) gets nothing but /health from it."""
    client.chat.completions.create(
        model="smollm2-llamacpp", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    loaded = httpx.get(f"{server.base}/api/v0/models/loaded").json()["data"]
    details = next(m for m in loaded if m["id"] == "smollm2-llamacpp")["details"]
    assert (
        "port" not in details
        and "port" not in client.models.retrieve("smollm2-llamacpp").model_extra["details"]
    )
    (port,) = listening_ports(int(details["pid"]))  # its own, and not the server's
    child = f"http://127.0.0.1:{port}"
    body = {"prompt": "hi", "n_predict": 2, "messages": [{"role": "user", "content": "hi"}], "content": "hi"}
    for path in ("/completion", "/v1/completions", "/v1/chat/completions", "/apply-template", "/tokenize"):
        assert httpx.post(child + path, json=body, timeout=30).status_code == 401, path
    for path in ("/slots", "/props", "/v1/models", "/metrics"):
        assert httpx.get(child + path, timeout=30).status_code in (401, 404, 501), path
    assert httpx.get(child + "/health", timeout=30).status_code == 200
    # No browser origin may read it either.
    preflight = {"origin": "http://evil.example", "access-control-request-method": "POST"}
    answer = httpx.options(child + "/completion", headers=preflight, timeout=30)
    assert answer.headers.get("access-control-allow-origin") in (None, "")


def test_a_dead_proxy_in_the_environment_does_not_break_loading(locked):
    """The locked server runs with HTTP_PROXY and friends pointing at a port nobody answers on."""
    with OpenAI(base_url=locked.url, api_key="key-one", max_retries=0, timeout=120) as good:
        reply = good.chat.completions.create(
            model="smollm2-llamacpp", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert reply.choices[0].message.content is not None and reply.usage is not None


def loaded(server: RunningServer, model: str) -> dict:
    listing = httpx.get(f"{server.base}/api/v0/models/loaded", headers={"x-api-key": "key-one"}).json()
    return next((m for m in listing["data"] if m["id"] == model), {})


def test_a_client_that_stops_reading_is_disconnected_and_frees_its_slot(locked):
    """A raw socket asks for a long stream and never reads it: after `send_timeout` (2 s here) of no
    progress the server drops the connection, and the model's slot is free again."""
    body = json.dumps(
        {
            "model": "smollm2-llamacpp",
            "messages": [{"role": "user", "content": "Write a very long story."}],
            "stream": True,
            "max_tokens": 1500,
            "logprobs": True,
            "top_logprobs": 20,  # ~2 KB of SSE per token: the buffers fill within a few hundred tokens
            "logit_bias": {"0": -100, "2": -100},  # no end of text
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{locked.port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer key-one\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", locked.port))
        reader.sendall(head + body)
        deadline = time.monotonic() + 120
        while loaded(locked, "smollm2-llamacpp").get("active_requests") != 1:
            assert time.monotonic() < deadline, "the stream never started"
            time.sleep(0.2)
        started = time.monotonic()
        while loaded(locked, "smollm2-llamacpp").get("active_requests") != 0:
            assert time.monotonic() < deadline, "the stuck stream still holds its slot"
            time.sleep(0.2)
        freed_after = time.monotonic() - started
        # The connection was dropped: what was buffered arrives, then the end, never the last event.
        reader.settimeout(10)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while piece := reader.recv(65536):
                received += piece
    assert received.startswith(b"HTTP/1.1 200") and b"data: [DONE]" not in received
    assert freed_after < 60, freed_after
    # The model serves the next client at once.
    with OpenAI(base_url=locked.url, api_key="key-one", max_retries=0, timeout=120) as good:
        reply = good.chat.completions.create(
            model="smollm2-llamacpp", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert reply.usage is not None and reply.usage.completion_tokens >= 1


def test_a_key_file_keeps_the_key_out_of_ps_and_non_ascii_keys_match(locked):
    assert "clé-quatre" not in " ".join(psutil.Process(locked.process.pid).cmdline())
    models = f"{locked.url}/models"
    assert httpx.get(models, headers={"x-api-key": "clé-quatre".encode()}).status_code == 200
    assert httpx.get(models, headers={"authorization": "Bearer clé-quatre".encode()}).status_code == 200
    assert httpx.get(models, headers={"x-api-key": "cle-quatre"}).status_code == 401
    assert "--api-key shows the key to every user" in locked.log_tail(400)
