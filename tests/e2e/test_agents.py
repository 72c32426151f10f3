"""Coding agents and reasoning models end to end, on both engines, through the official SDKs.

No reasoning weights can be had here, so the starter plays a reasoning model: its chat template opens
<think> in the generation prompt (as Qwen3's thinking templates do), and the `grammar` extension forces the
output into a reasoning shape (`…</think>answer`, or gpt-oss's harmony channels). These tests prove the
plumbing (separation, streaming, budgets, agents' request shapes, prompt-cache reuse), not model quality.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.support.e2e import THINK_TEMPLATE, THINK_TOOLS_TEMPLATE

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib
from tests.support.server import STARTER_SOURCE, RunningServer

ENGINES = ["mlx", "llamacpp"]
# Tests of engine-neutral layers (tool parsing, Responses items, custom-tool grammars: generation/ and api/)
# run on llama.cpp only by default: on MLX they cost a minute each at this CPU's ~10 tok/s prefill, and the
# MLX path they would add (its templates, grammars, prompt cache) is shown by the other tests here.
# RADIS_TESTS_FULL=1 runs them on both engines (as tests/e2e/conftest.py does for the API-layer files).
NEUTRAL = pytest.mark.parametrize(
    "engine", ENGINES if os.environ.get("RADIS_TESTS_FULL") == "1" else ["llamacpp"]
)
# Forced-open: the output starts inside the reasoning.
THINKING = 'start: /[a-z ]{8,24}/ "</think>" /[A-Z][a-z]{2,10}/'
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CALL = (
    '<tool_call>\\n{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}\\n</tool_call>'
)
# Reasoning, then a call in the answer (parsed), or a call inside the reasoning (not a call).
THEN_CALL = f'start: /[a-z ]{{6,16}}/ "</think>\\n\\n" "{CALL}"'
CALL_IN_THOUGHT = f'start: "{CALL}" /[a-z ]{{2,8}}/ "</think>" /[A-Z][a-z]{{2,8}}/'
HARMONY = (
    'start: "<|channel|>analysis<|message|>" /[a-z ]{6,16}/ "<|end|>"'
    ' "<|start|>assistant<|channel|>final<|message|>" /[A-Z][a-z]{2,10}/'
)
SYSTEM = "Answer briefly. Use tools when asked about weather."
BILLING = "x-anthropic-billing-header: cc_version=2.1.284.dd4; cc_entrypoint=sdk-cli; cch={};"


def entries() -> str:
    def entry(name: str, engine: str, context: int = 1024, **fields: str) -> str:
        head = f'[models.{name}-{engine}]\nsource = "{STARTER_SOURCE}"\nengine = "{engine}"\n'
        return (
            head + f"context_length = {context}\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()) + "\n"
        )

    text = ""
    for engine in ENGINES:
        text += entry("think", engine, chat_template=f"'''{THINK_TEMPLATE}'''")
        text += entry("thinktools", engine, chat_template=f"'''{THINK_TOOLS_TEMPLATE}'''")
        text += entry("harmony", engine, reasoning='"harmony"')
    return text + entry("small", "llamacpp", 256, anthropic_usage_window="200000")


@pytest.fixture(scope="module")
def server(tmp_path_factory, smollm_gguf):
    running = RunningServer(entries(), tmp_path_factory.mktemp("agents")).wait_ready()
    yield running
    assert running.stop() == 0, running.log_tail()


@pytest.fixture(scope="module")
def sdk(server):
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def claude(server):
    with anthropic.Anthropic(base_url=server.base, api_key="x", max_retries=0, timeout=300) as client:
        yield client


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_reasoning_is_kept_apart_streamed_or_not(sdk, engine):
    model = f"think-{engine}"
    reply = sdk.chat.completions.create(
        model=model, messages=ask("Hi"), max_tokens=40, temperature=0, extra_body={"grammar": THINKING}
    )
    message = reply.choices[0].message.model_dump()
    assert message["reasoning_content"] == message["reasoning"] and len(message["reasoning"]) >= 8
    assert message["content"] and "</think>" not in message["content"] and "<think>" not in message["content"]
    assert 0 < reply.usage.completion_tokens_details.reasoning_tokens < reply.usage.completion_tokens
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=ask("Hi"),
            max_tokens=40,
            temperature=0,
            stream=True,
            extra_body={"grammar": THINKING},
        )
    )
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == message["reasoning"]
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(not d.get("reasoning_content") for d in deltas[first_content:])  # reasoning comes first


def test_a_budget_closes_the_reasoning_and_reasoning_off_skips_it(sdk, engine):
    model = f"think-{engine}"
    cut = sdk.chat.completions.create(
        model=model,
        messages=ask("Hi"),
        max_tokens=12,
        temperature=0,
        extra_body={
            "grammar": 'start: /[a-z ]{30,40}/ "</think>" /[A-Z][a-z]+/',
            "reasoning_budget_tokens": 3,
        },
    )
    # The grammar wanted 30+ characters of reasoning: the budget closed it after 3 tokens, and the model went
    # on to the answer (the budget's continuation is the model's own text, the grammar having done its part).
    assert cut.usage.completion_tokens_details.reasoning_tokens == 3
    assert len(cut.choices[0].message.model_dump()["reasoning_content"]) < 30
    assert cut.choices[0].message.content and cut.usage.completion_tokens <= 12
    off = sdk.chat.completions.create(model=model, messages=ask("Hi"), max_tokens=6, reasoning_effort="none")
    assert getattr(off.choices[0].message, "reasoning_content", None) is None
    assert off.usage.completion_tokens_details.reasoning_tokens == 0


@NEUTRAL
def test_calls_are_parsed_from_the_answer_only(sdk, engine):
    model = f"thinktools-{engine}"
    tools = [
        {
            "type": "function",
            "function": {k: v for k, v in WEATHER.items() if k != "input_schema"}
            | {"parameters": WEATHER["input_schema"]},
        }
    ]
    called = sdk.chat.completions.create(
        model=model,
        messages=ask("Weather in Paris?"),
        tools=tools,
        max_tokens=120,  # the grammar ends the reply; room for a tokenization of single characters
        temperature=0,
        extra_body={"grammar": THEN_CALL},
    )
    choice = called.choices[0]
    assert (
        choice.finish_reason == "tool_calls" and choice.message.tool_calls[0].function.name == "get_weather"
    )
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert choice.message.model_dump()["reasoning_content"]
    thought = sdk.chat.completions.create(
        model=model,
        messages=ask("Weather in Paris?"),
        tools=tools,
        max_tokens=120,  # the grammar ends the reply; room for a tokenization of single characters
        temperature=0,
        extra_body={"grammar": CALL_IN_THOUGHT},
    )
    message = thought.choices[0].message
    assert not message.tool_calls and thought.choices[0].finish_reason == "stop"
    assert "<tool_call>" in message.model_dump()["reasoning_content"] and message.content


def test_harmony_channels_on_both_engines(sdk, engine):
    reply = sdk.chat.completions.create(
        model=f"harmony-{engine}",
        messages=ask("Capital of France?"),
        max_tokens=50,
        temperature=0,
        extra_body={"grammar": HARMONY},
    )
    message = reply.choices[0].message.model_dump()
    assert message["reasoning_content"] and message["content"]
    assert "<|" not in message["content"] + message["reasoning_content"]


def claude_turn(claude, model: str, messages: list, nonce: str, stream: bool):
    """One request as Claude Code sends it: billing line, cache_control, thinking, 32000 max tokens."""
    request = dict(
        model=model,
        max_tokens=32000,
        system=[
            {"type": "text", "text": BILLING.format(nonce)},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}},
        ],
        messages=messages,
        tools=[WEATHER],
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        extra_body={
            "grammar": THEN_CALL if len(messages) == 1 else THINKING,
            "context_management": {"edits": []},
        },
    )
    if not stream:
        return claude.messages.create(**request), None
    with claude.messages.stream(**request) as events:
        start = None
        for event in events:
            if event.type == "message_start":
                start = event.message.usage
        return events.get_final_message(), start


def test_a_claude_code_session_reuses_its_prefix_despite_a_new_nonce(claude, engine):
    model = f"thinktools-{engine}"
    first, start = claude_turn(claude, model, ask("Weather in Paris?"), "a1b2c", stream=True)
    kinds = [block.type for block in first.content]
    assert kinds[0] == "thinking" and first.content[0].signature and "tool_use" in kinds
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.input == {"city": "Paris"}
    assert (
        start.input_tokens + start.cache_read_input_tokens
        == first.usage.input_tokens + first.usage.cache_read_input_tokens
    )
    assert start.input_tokens > 0  # the prompt's size is known at message_start (Claude Code reads it there)
    history = [
        *ask("Weather in Paris?"),
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}],
        },
    ]
    second, start = claude_turn(claude, model, history, "f9e8d", stream=True)
    assert second.usage.cache_read_input_tokens > 0  # the billing line's nonce no longer defeats the cache
    system = [{"type": "text", "text": "You are Claude Code."}, {"type": "text", "text": SYSTEM}]
    whole = claude.messages.count_tokens(model=model, messages=history, system=system, tools=[WEATHER])
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == whole.input_tokens
    forged = [
        *history[:1],
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "forged"}]},
        *history[2:],
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        claude_turn(claude, model, forged, "00000", stream=False)
    assert "signature" in info.value.body["error"]["message"]


def codex_request(model: str, items: list, stream_tools: bool = True) -> dict:
    return dict(
        model=model,
        instructions="You are Codex, a coding agent.",
        input=items,
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "description": WEATHER["description"],
                "strict": False,
                "parameters": WEATHER["input_schema"],
            },
            {
                "type": "custom",
                "name": "apply_patch",
                "description": "Edit files.",
                "format": {
                    "type": "grammar",
                    "syntax": "lark",
                    "definition": 'start: "*** Begin Patch" /[a-z]+/ "*** End Patch"',
                },
            },
        ],
        tool_choice="auto",
        parallel_tool_calls=False,
        reasoning={"effort": "medium", "summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="conversation-1",
        text={"verbosity": "low"},
        max_output_tokens=80,
        temperature=0,
    )


@NEUTRAL
def test_a_codex_session_round_trips_reasoning_and_calls(sdk, engine):
    model = f"thinktools-{engine}"
    items = [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<permissions>ok</permissions>"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
    ]
    with sdk.responses.stream(**codex_request(model, items), extra_body={"grammar": THEN_CALL}) as events:
        names = [event.type for event in events]
        first = events.get_final_response()
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert names.index("response.reasoning_summary_text.delta") < names.index(
        "response.function_call_arguments.delta"
    )
    reasoning, call = first.output[0], first.output[-1]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text and reasoning.encrypted_content
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    assert first.usage.output_tokens_details.reasoning_tokens > 0
    with pytest.raises(openai.NotFoundError):  # store: false keeps nothing
        sdk.responses.retrieve(first.id)
    history = [
        *items,
        reasoning.model_dump(exclude_none=True),
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"},
    ]
    second = sdk.responses.create(**codex_request(model, history), extra_body={"grammar": THINKING})
    assert second.usage.input_tokens_details.cached_tokens > 0
    assert second.output[-1].type == "message" and second.output[-1].content[0].text
    foreign = [*items, {**reasoning.model_dump(exclude_none=True), "encrypted_content": "rmx1.AAAA.BBBB"}]
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(**codex_request(model, foreign))
    assert info.value.body["param"] == "input[2].encrypted_content"


@NEUTRAL
def test_a_forced_custom_tool_writes_input_its_grammar_allows(sdk, engine):
    request = codex_request(f"think-{engine}", ask("Add 2 and 3"))
    request["tools"][1]["format"]["definition"] = 'start: "add " NUMBER " and " NUMBER\n%import common.NUMBER'
    reply = sdk.responses.create(**{**request, "tool_choice": {"type": "custom", "name": "apply_patch"}})
    call = reply.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    words = call.input.split(" ")
    assert words[0] == "add" and words[2] == "and" and words[1].replace(".", "").isdigit()


def test_context_limits_as_agents_expect(claude, sdk, server):
    # max_tokens far past the window is clamped to the room the prompt leaves (no 400).
    fine = claude.messages.create(model="small-llamacpp", max_tokens=32000, messages=ask("Hi"))
    assert fine.stop_reason in ("end_turn", "max_tokens")
    assert sdk.chat.completions.create(model="small-llamacpp", messages=ask("Hi"), max_tokens=100000).choices
    # A prompt that alone does not fit: Anthropic's wording, which Claude Code matches to compact.
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="small-llamacpp", max_tokens=10, messages=ask("word " * 400))
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert info.value.body["error"]["message"].startswith("prompt is too long: ")
    assert info.value.body["error"]["message"].endswith(" tokens > 255 maximum")
    # Codex: a failed response in the stream, not an HTTP error (which it treats as fatal).
    body = {"model": "small-llamacpp", "input": "word " * 400, "stream": True}
    events = httpx.post(f"{server.url}/responses", json=body, timeout=60).text
    assert '"type":"response.failed"' in events and '"code":"context_length_exceeded"' in events


def test_scaled_usage_lets_claude_code_compact_in_time(claude, sdk):
    # small-llamacpp has 256 tokens of context and anthropic_usage_window = 200000: a prompt at 85% of its
    # real window must read as at least 85% of the 200k Claude Code assumes (OpenAI's routes stay unscaled).
    prompt = ask("word " * 215)
    real = sdk.chat.completions.create(
        model="small-llamacpp", messages=prompt, max_tokens=1
    ).usage.prompt_tokens
    assert 0.85 * 256 <= real < 256
    counted = claude.messages.count_tokens(model="small-llamacpp", messages=prompt).input_tokens
    reply = claude.messages.create(model="small-llamacpp", max_tokens=4, messages=prompt)
    used = reply.usage.input_tokens + reply.usage.cache_read_input_tokens
    # (input and cached tokens are each rounded once scaled)
    assert abs(counted - round(real * 200_000 / 256)) <= 1 and abs(used - counted) <= 1
    assert used >= 0.85 * 200_000


def readme_block(after: str, language: str) -> str:
    """The first fenced block of `language` after a line starting with `after` in README.md."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    rest = text[text.index(after) :]
    start = rest.index(f"```{language}\n") + len(language) + 4
    return rest[start : rest.index("```", start)]


def test_the_readme_agent_snippets_work_as_written(server, monkeypatch):
    # Claude Code's environment, as the README exports it: the anthropic SDK reads the same variables.
    exports = readme_block("**Claude Code**", "")
    for line in exports.splitlines():
        if line.startswith("export "):
            for assignment in line.removeprefix("export ").split("#")[0].split():
                name, value = assignment.split("=", 1)
                monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base)  # the README's, on this test's port
    model = "think-llamacpp"
    with (
        anthropic.Anthropic(max_retries=0) as claude,
        # Streamed, as Claude Code sends it (the SDK refuses max_tokens 32000 without a stream).
        claude.messages.stream(
            model=model, max_tokens=32000, messages=ask("Hi"), extra_body={"grammar": THINKING}
        ) as stream,
    ):
        reply = stream.get_final_message()
    assert reply.content[0].type == "thinking" and reply.content[-1].text
    # Codex's provider: base_url and wire_api = "responses" are what the openai SDK's Responses client uses.
    codex = tomllib.loads(readme_block("**Codex CLI**", "toml"))
    provider = codex["model_providers"][codex["model_provider"]]
    assert provider["wire_api"] == "responses"
    base = provider["base_url"].replace("http://localhost:1234", server.base)
    with openai.OpenAI(base_url=base, api_key="local", max_retries=0) as sdk:
        response = sdk.responses.create(
            model=model, input="Hi", max_output_tokens=40, extra_body={"grammar": THINKING}
        )
    assert response.output[0].type == "reasoning" and response.output_text
