"""Bad input gets an OpenAI-shaped error with the right status, and the server keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.errors import error_of

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": [], "temperature": 0}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": USER, "temperature": 2.5}, "temperature"),
        ({"messages": USER, "max_tokens": -5}, "max_tokens"),
        ({"messages": USER, "top_p": 1.5}, "top_p"),
        ({"messages": USER, "logit_bias": {"999999": 1}}, "logit_bias"),
        ({"messages": USER, "n": 500}, "n"),
    ],
)
def test_invalid_values_are_400(client, model, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, **kwargs)
    error = error_of(info.value)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_context_length_exceeded(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        # (a max_tokens past the room is clamped to it, as llama-server does: not an error)
        long = [{"role": "user", "content": "word " * 2100}]
        client.chat.completions.create(model=model, messages=long, max_tokens=1)
    assert error_of(info.value)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="word " * 2100, max_tokens=1)
    assert error_of(info.value)["code"] == "context_length_exceeded"


def test_unknown_model_is_404_with_param(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=USER)
    error = error_of(info.value)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("../../etc/passwd")


def test_token_outside_vocabulary_is_400(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt=[1, 10_000_000], max_tokens=1)
    assert error_of(info.value)["param"] == "prompt"


def test_malformed_json_wrong_types_and_unknown_route(server):
    bad = httpx.post(
        f"{server.url}/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    typed = httpx.post(f"{server.url}/completions", json={"model": "smollm2-mlx", "prompt": 5})
    assert typed.status_code == 400 and typed.json()["error"]["param"] == "prompt"
    missing = httpx.get(f"{server.url}/does/not/exist")
    assert missing.status_code == 404 and "error" in missing.json()


def test_unknown_extra_fields_are_ignored(client, model):
    reply = client.chat.completions.create(
        model=model, messages=USER, max_tokens=1, extra_body={"not_an_openai_field": [1, 2]}
    )
    assert reply.usage.completion_tokens == 1


def test_engine_failures_are_500_and_the_server_keeps_serving(client, model):
    for broken in ("broken", "garbage"):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=broken, messages=USER, max_tokens=1)
        assert info.value.status_code in (400, 500)
        error = error_of(info.value)
        assert error["message"] and "Traceback" not in error["message"]
    assert client.chat.completions.create(model=model, messages=USER, max_tokens=1).choices
