"""Continuous batching and the prompt cache on the MLX engine, end to end through the openai SDK.

Concurrent requests share one batch on the model's worker; they must give what they give alone.
`smollm2-mlx-nocache` is the same model with its prompt cache off: the cold reference.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

MLX = "smollm2-mlx"
COLD = "smollm2-mlx-nocache"
QUESTIONS = ["Name a primary color.", "What is 2 + 2?", "Say hello in French.", "Which planet is largest?"]


def ask(client, model, question, **kwargs):
    messages = [{"role": "user", "content": question}]
    return client.chat.completions.create(model=model, messages=messages, **kwargs)


def outcome(reply) -> tuple[str, str, int]:
    choice = reply.choices[0]
    return choice.message.content, choice.finish_reason, reply.usage.completion_tokens


def together(fn, items):
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(fn, items))


@pytest.fixture(scope="module", autouse=True)
def loaded(server):
    """Both models loaded up front: their stats exist from the start."""
    for model in (MLX, COLD):
        httpx.post(f"{server.base}/api/v0/models/load", json={"model": model}, timeout=300).raise_for_status()


def scheduler_stats(server, model) -> dict[str, int]:
    loaded = httpx.get(f"{server.base}/api/v0/models/loaded", timeout=30).json()["data"]
    return next(m["stats"] for m in loaded if m["id"] == model)


def test_concurrent_greedy_requests_equal_the_same_requests_one_at_a_time(client):
    # On the model without a prompt cache, so the batched runs prefill from scratch too.
    alone = [outcome(ask(client, COLD, q, temperature=0, max_tokens=6 + i)) for i, q in enumerate(QUESTIONS)]
    batched = together(
        lambda i: outcome(ask(client, COLD, QUESTIONS[i], temperature=0, max_tokens=6 + i)), range(4)
    )
    assert batched == alone
    assert all(text for text, _, _ in alone)


def test_a_seed_gives_the_same_sample_alone_and_in_a_batch(client):
    def sample(question: str, seed: int) -> str:
        return outcome(ask(client, MLX, question, temperature=1.0, seed=seed, max_tokens=8))[0]

    alone = sample(QUESTIONS[0], 21)
    requests = [(QUESTIONS[0], 21), (QUESTIONS[1], 21), (QUESTIONS[2], 3)]
    batched = together(lambda args: sample(*args), requests)
    assert batched[0] == alone


def left_one(server, before: dict[str, int]) -> dict[str, int]:
    """The scheduler's stats once one request has been cancelled since `before` and none runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = scheduler_stats(server, MLX)
        if stats["cancelled"] > before["cancelled"] and stats["active"] + stats["waiting"] == 0:
            break
        time.sleep(0.1)
    return stats


# Long whatever the model says: its end tokens (<|endoftext|> 0, <|im_end|> 2) are banned, so it runs
# to max_tokens (~50 s here) and a cached prompt cannot make it finish before the client leaves.
LONG = {
    "model": MLX,
    "messages": [{"role": "user", "content": "Count to 500."}],
    "max_tokens": 500,
    "logit_bias": {"0": -100, "2": -100},
}


def test_a_disconnected_stream_frees_its_batch_slot(server):
    before = scheduler_stats(server, MLX)
    with (
        httpx.Client(base_url=server.url, timeout=120) as http,
        http.stream("POST", "/chat/completions", json={**LONG, "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        while '"content":""' in (line := next(lines)) or not line.startswith("data: {"):
            pass  # past keep-alives and the role chunk: a token has been generated
    stats = left_one(server, before)
    assert stats["cancelled"] == before["cancelled"] + 1
    assert stats["active"] == stats["waiting"] == 0
    # Far fewer than 500 tokens were generated: the slot was not left decoding to the end.
    assert stats["finished"] == before["finished"]


def test_a_client_that_leaves_a_non_streaming_request_frees_its_batch_slot(server):
    before = scheduler_stats(server, MLX)
    with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection: the client is gone
        httpx.post(f"{server.url}/chat/completions", json=LONG, timeout=httpx.Timeout(30, read=3))
    stats = left_one(server, before)
    assert stats["cancelled"] == before["cancelled"] + 1
    assert stats["active"] == stats["waiting"] == 0 and stats["finished"] == before["finished"]


def test_second_turn_reuses_the_first_turns_cache_with_the_same_greedy_text(client, server):
    first = [{"role": "user", "content": "Name three fruits."}]
    reply = client.chat.completions.create(model=MLX, messages=first, temperature=0, max_tokens=8)
    history = [
        *first,
        {"role": "assistant", "content": reply.choices[0].message.content},
        {"role": "user", "content": "And three vegetables?"},
    ]
    warm = client.chat.completions.create(model=MLX, messages=history, temperature=0, max_tokens=8)
    cold = client.chat.completions.create(model=COLD, messages=history, temperature=0, max_tokens=8)
    assert warm.usage.prompt_tokens_details.cached_tokens >= reply.usage.prompt_tokens
    assert cold.usage.prompt_tokens_details.cached_tokens == 0
    assert outcome(warm) == outcome(cold) and warm.usage.prompt_tokens == cold.usage.prompt_tokens

    chunks = list(
        client.chat.completions.create(
            model=MLX,
            messages=history,
            temperature=0,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1  # all but the last token
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == outcome(cold)[0]
    stats = scheduler_stats(server, MLX)
    assert stats["prompt_cache_hits"] >= 2 and stats["prompt_cache_bytes"] > 0
    assert scheduler_stats(server, COLD)["prompt_cache_bytes"] == 0


def test_completions_report_cached_prompt_tokens(client):
    prompt = "A list of the largest cities in Europe:\n1."
    cold = client.completions.create(model=COLD, prompt=prompt, temperature=0, max_tokens=6)
    client.completions.create(model=MLX, prompt=prompt, temperature=0, max_tokens=6)
    warm = client.completions.create(model=MLX, prompt=prompt, temperature=0, max_tokens=6)
    assert warm.usage.prompt_tokens_details.cached_tokens == warm.usage.prompt_tokens - 1
    assert warm.choices[0].text == cold.choices[0].text
