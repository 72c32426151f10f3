"""Backpressure and keep-alive end to end: a server with a one-place, one-waiter model per engine.

Its own server (not the suite's): the queue limits and a short stream grace are configured here.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support.e2e import ENGINES
from tests.support.errors import error_of
from tests.support.server import STARTER_SOURCE, RunningServer

QUEUE_TIMEOUT = 1.5
# <|endoftext|> and <|im_end|> banned: the request in service keeps decoding until max_tokens.
NO_EOS = {"0": -100, "2": -100}
# Long enough to keep the one place busy past the queue timeout: llama.cpp ~100 tok/s, MLX ~10 here.
HOLD_TOKENS = {"llamacpp": 400, "mlx": 40}


def config() -> str:
    head = "[server]\nstream_grace = 0.3\nkeepalive_interval = 0.5\n\n"
    entry = (
        '[models.queue-{0}]\nsource = "{1}"\nengine = "{0}"\ncontext_length = 2048\n'
        f"max_concurrent = 1\nmax_queue = 1\nqueue_timeout = {QUEUE_TIMEOUT}\n\n"
    )
    return head + "".join(entry.format(engine, STARTER_SOURCE) for engine in ENGINES)


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory, smollm_gguf):
    running = RunningServer(config(), tmp_path_factory.mktemp("backpressure")).wait_ready()
    yield running
    assert running.stop() == 0, running.log_tail()


@pytest.fixture(scope="module")
def sdk(queue_server) -> OpenAI:
    # max_retries=0: the SDK would otherwise honour Retry-After and retry the 429 itself.
    return OpenAI(base_url=queue_server.url, api_key="x", max_retries=0, timeout=120)


def ask(sdk: OpenAI, model: str, content: str, **kwargs):
    messages = [{"role": "user", "content": content}]
    return sdk.chat.completions.create(model=model, messages=messages, temperature=0, **kwargs)


def fresh() -> str:
    """A prompt no cache has seen (~60 tokens): its prefill takes seconds on MLX's CPU backend."""
    words = " ".join(uuid.uuid4().hex[:6] for _ in range(10))
    return f"Here are some codes: {words}. Repeat the first code."


@pytest.mark.parametrize("engine", ENGINES)
def test_full_queue_is_429_and_a_long_wait_is_503_both_with_retry_after(sdk, engine):
    model = f"queue-{engine}"
    ask(sdk, model, "Hi", max_tokens=1)  # loaded before the clock matters
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        holder = ask(
            sdk, model, "Count to 1000.", max_tokens=HOLD_TOKENS[engine], logit_bias=NO_EOS, stream=True
        )
        next(iter(holder))  # in service now: the one place is taken
        started = time.monotonic()
        waiter = pool.submit(ask, sdk, model, "Hello", max_tokens=2)
        time.sleep(0.3)  # the waiter has joined the queue (one waiter fills it)
        with pytest.raises(openai.RateLimitError) as refused:
            ask(sdk, model, "Hello again", max_tokens=2)
        refused_after = time.monotonic() - started
        with pytest.raises(openai.InternalServerError) as timed_out:
            waiter.result()
        waited = time.monotonic() - started
        finishes = [c.choices[0].finish_reason for c in holder if c.choices]
        assert finishes[-1] == "length"  # the request in service ran to its end, undisturbed
    assert refused.value.status_code == 429 and refused_after < QUEUE_TIMEOUT  # refused at once
    error = error_of(refused.value)
    assert (error["type"], error["code"], error["param"]) == ("rate_limit_error", "queue_full", "model")
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert timed_out.value.status_code == 503 and error_of(timed_out.value)["code"] == "queue_timeout"
    assert int(timed_out.value.response.headers["retry-after"]) >= 1
    assert QUEUE_TIMEOUT <= waited < QUEUE_TIMEOUT + 5
    # The queue drained: the next request is served.
    assert ask(sdk, model, "Hi", max_tokens=2).choices[0].finish_reason in ("length", "stop")


def test_slow_prefill_streams_keepalive_comments_and_a_leaving_client_frees_its_place(queue_server, sdk):
    # A fresh prompt (nothing cached) of ~60 tokens: several seconds of prefill on MLX's CPU backend.
    content = fresh()
    body = {
        "model": "queue-mlx",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 2,
        "temperature": 0,
        "stream": True,
    }
    lines: list[str] = []
    with httpx.stream("POST", f"{queue_server.url}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    events = [(i, json.loads(line[6:])) for i, line in enumerate(lines[:-1]) if line.startswith("data: ")]
    texts = [i for i, event in events if event["choices"] and event["choices"][0]["delta"].get("content")]
    assert len(comments) >= 2 and {lines[i] for i in comments} == {": keep-alive"}
    # Comments only while the first token is computed, before any event; the stream ends as usual.
    assert max(comments) < min(i for i, _ in events) and texts and lines[-1] == "data: [DONE]"
    # The SDK reads such a stream (a fresh prompt again: comments first) as usual, skipping the comments.
    text = "".join(
        c.choices[0].delta.content or "" for c in ask(sdk, "queue-mlx", fresh(), max_tokens=2, stream=True)
    )
    assert text
    # A client that leaves during the keep-alive phase gives its one place back.
    with httpx.stream(
        "POST",
        f"{queue_server.url}/chat/completions",
        json={**body, "messages": [{"role": "user", "content": fresh()}], "max_tokens": 50},
    ) as left:
        assert next(left.iter_lines()) == ": keep-alive"
    assert ask(sdk, "queue-mlx", "Hi", max_tokens=1).choices[0].finish_reason == "length"
