"""Ollama's native API end to end: the official `ollama` Python client against the shared server, on both
engines, plus the raw NDJSON wire format (httpx) and bad input. Replies stay a few tokens long."""

from __future__ import annotations

import json
import math
import time

import httpx
import jsonschema_rs
import ollama
import pytest

from tests.support.e2e import FRANCE
from tests.support.ndjson import ndjson_lines

SHORT = {"temperature": 0, "num_predict": 6}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
CITY_ARGUMENT = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": CITY_ARGUMENT,
    },
}
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


@pytest.fixture(scope="module")
def ollama_client(server) -> ollama.Client:
    with ollama.Client(host=server.base, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def wire(server):
    with httpx.Client(base_url=server.base, timeout=300) as http:
        yield http


def test_chat_streamed_and_not_agree(ollama_client, model):
    single = ollama_client.chat(model=model, messages=FRANCE, options=SHORT)
    assert single.done and single.done_reason in ("stop", "length") and single.model == model
    assert single.message.role == "assistant" and single.message.content
    assert 0 < single.eval_count <= 6 and single.prompt_eval_count > 0
    assert single.total_duration >= single.eval_duration > 0
    parts = list(ollama_client.chat(model=model, messages=FRANCE, options=SHORT, stream=True))
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content for p in parts) == single.message.content
    assert parts[-1].eval_count == single.eval_count


def test_logprobs_come_back_per_generated_token(ollama_client):
    # The encoding is engine-neutral (schemas/ollama); each engine's logprobs are tested in test_logprobs.py.
    model = "smollm2-llamacpp"
    reply = ollama_client.chat(model=model, messages=FRANCE, options=SHORT, logprobs=True, top_logprobs=2)
    entries = reply.logprobs
    assert len(entries) == reply.eval_count and "".join(e.token for e in entries) == reply.message.content
    for entry in entries:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 2 and entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob


def test_generate_streamed_and_not(ollama_client, model):
    single = ollama_client.generate(model=model, prompt="Say hello.", options=SHORT)
    assert single.done and single.response and single.eval_count <= 6
    parts = list(ollama_client.generate(model=model, prompt="Say hello.", options=SHORT, stream=True))
    assert parts[-1].done and "".join(p.response for p in parts) == single.response


def test_raw_ndjson_wire_format(wire, model):
    body = {"model": model, "messages": FRANCE, "options": SHORT}  # no `stream`: Ollama streams
    response = wire.post("/api/chat", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    chunks = ndjson_lines(response.text)
    assert all(c["model"] == model and c["created_at"].endswith("Z") for c in chunks)
    assert all(set(c["message"]) >= {"role", "content"} for c in chunks)
    final = chunks[-1]
    assert final["done"] is True and not any(c["done"] for c in chunks[:-1])
    assert all(isinstance(final[k], int) and final[k] >= 0 for k in DURATIONS)
    generated = ndjson_lines(wire.post("/api/generate", json={"model": model, "prompt": "Hi", **SHORT}).text)
    assert generated[-1]["done"] is True and all("response" in c for c in generated)


def test_format_schema_is_enforced(ollama_client, model):
    reply = ollama_client.chat(
        model=model,
        messages=[{"role": "user", "content": "Which city is the capital of France? Answer in JSON."}],
        format=CITY,
        options={"temperature": 0, "num_predict": 40},
    )
    jsonschema_rs.validate(CITY, json.loads(reply.message.content))


def test_tools_produce_a_call_with_object_arguments(ollama_client, model):
    # The starter's template knows no tools: the generic format constrains the reply to a call or a
    # text answer, and a tiny model asked plainly calls (tool_choice is always auto on Ollama).
    ask = [{"role": "user", "content": "What is the weather in Paris? Use the get_weather tool."}]
    options = {"temperature": 0, "num_predict": 40}
    reply = ollama_client.chat(model=model, messages=ask, tools=[WEATHER], options=options)
    [call] = reply.message.tool_calls
    assert call.function.name == "get_weather" and reply.done_reason == "stop"
    jsonschema_rs.validate(CITY_ARGUMENT, dict(call.function.arguments))
    if model.endswith("mlx"):
        return  # the stream's encoding is the same for every engine: its check runs once, on llama.cpp
    parts = list(ollama_client.chat(model=model, messages=ask, tools=[WEATHER], options=options, stream=True))
    streamed = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == [
        (call.function.name, dict(call.function.arguments))
    ]


def test_think_returns_the_reasoning_apart(ollama_client):
    # A template that opens <think> in its generation prompt: the starter then reasons (llama.cpp only:
    # the split is the generation layer's, the same on every engine).
    model = "smollm2-think-llamacpp"
    assert "thinking" in ollama_client.show(model).capabilities
    thought = ollama_client.chat(model=model, messages=FRANCE, think=True, options=SHORT)
    assert thought.message.thinking and "<think>" not in thought.message.thinking
    parts = list(ollama_client.generate(model=model, prompt="Hi", think=True, options=SHORT, stream=True))
    assert "".join(p.thinking or "" for p in parts) and parts[-1].done
    plain = ollama_client.chat(model=model, messages=FRANCE, think=False, options=SHORT)
    assert not plain.message.thinking and plain.message.content
    with pytest.raises(ollama.ResponseError) as refused:
        ollama_client.chat(model="smollm2-llamacpp", messages=FRANCE, think=True, options=SHORT)
    assert refused.value.status_code == 400 and "does not support thinking" in refused.value.error


def test_embed_is_normalised_and_embeddings_are_raw(ollama_client):
    embed = ollama_client.embed(model="minilm", input=["A cat sits on the mat", "Quarterly earnings"])
    assert [len(v) for v in embed.embeddings] == [384, 384] and embed.prompt_eval_count > 0
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-4) for v in embed.embeddings)
    cut = ollama_client.embed(model="minilm", input="A cat sits on the mat", dimensions=100).embeddings[0]
    assert len(cut) == 100 and math.isclose(math.hypot(*cut), 1.0, rel_tol=1e-4)  # cut, then renormalised
    raw = ollama_client.embeddings(model="minilm", prompt="A cat sits on the mat").embedding
    assert len(raw) == 384 and raw[:100] != pytest.approx(cut)


def test_show_tags_ps_and_version(ollama_client, wire, model):
    shown = ollama_client.show(model)
    assert (
        shown.modelinfo["general.architecture"] == "llama" and shown.modelinfo["llama.context_length"] == 2048
    )
    assert shown.details.format == "gguf" and shown.details.quantization_level == "Q4_1"
    assert shown.details.parameter_size == "135M" and {"completion", "tools"} <= set(shown.capabilities)
    assert "tokenizer.chat_template" not in shown.modelinfo and "<|im_start|>" in shown.template
    names = [m.model for m in ollama_client.list().models]
    assert model in names and "minilm" in names
    ollama_client.chat(model=model, messages=FRANCE, options=SHORT)
    [running] = [m for m in ollama_client.ps().models if m.model == model]
    assert running.context_length == 2048 and running.size > 0 and running.expires_at is not None
    assert wire.get("/api/version").json() == {"version": "0.12.0"}
    assert wire.head("/").status_code == 200 and wire.get("/").text == "Ollama is running"


def test_pull_of_a_configured_model_and_delete_refused(ollama_client):
    assert [p.status for p in ollama_client.pull("smollm2-llamacpp", stream=True)] == [
        "pulling manifest",
        "success",
    ]
    assert ollama_client.pull("smollm2-llamacpp:latest").status == "success"
    with pytest.raises(ollama.ResponseError) as refused:
        ollama_client.delete("garbage")  # a local path in models.toml: never ours to delete
    assert refused.value.status_code == 400 and "delete its files yourself" in refused.value.error


def test_bad_input_is_an_ollama_error_never_a_500(ollama_client, wire):
    with pytest.raises(ollama.ResponseError) as unknown:
        ollama_client.chat(model="no-such-model", messages=FRANCE)
    assert unknown.value.status_code == 404 and unknown.value.error == "model 'no-such-model' not found"
    with pytest.raises(ollama.ResponseError) as typed:
        ollama_client.chat(model="smollm2-llamacpp", messages=FRANCE, options={"temperature": "hot"})
    assert typed.value.status_code == 400 and "options.temperature" in typed.value.error
    for body in (
        {"model": "smollm2-llamacpp", "prompt": "x", "keep_alive": "300"},
        {"model": "smollm2-llamacpp", "prompt": "x", "options": {"stop": 5}},
        {"model": "smollm2-llamacpp", "prompt": "x", "format": "yaml"},
        {"model": "smollm2-llamacpp", "prompt": "x", "images": ["iVBORw0KGgo="]},
    ):
        response = wire.post("/api/generate", json=body)
        assert response.status_code == 400 and isinstance(response.json()["error"], str), body
    garbled = wire.post("/api/chat", content=b"{", headers={"content-type": "application/json"})
    assert garbled.status_code == 400 and set(garbled.json()) == {"error"}
    assert ollama_client.generate(model="smollm2-llamacpp", prompt="Hi", options=SHORT).done  # still serving


def test_keep_alive_loads_and_unloads(ollama_client, model):
    assert ollama_client.chat(model=model, messages=[]).done_reason == "load"
    assert model in [m.model for m in ollama_client.ps().models]
    assert ollama_client.generate(model=model, keep_alive=0).done_reason == "unload"
    assert model not in [m.model for m in ollama_client.ps().models]
    # 0 with a message: answered, then unloaded.
    assert ollama_client.chat(model=model, messages=FRANCE, options=SHORT, keep_alive=0).done
    deadline = time.monotonic() + 30
    while model in [m.model for m in ollama_client.ps().models] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model not in [m.model for m in ollama_client.ps().models]
