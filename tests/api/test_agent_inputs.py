"""What coding agents and reasoning clients send, on a fake engine: accepted as sent, or a 400 naming it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
MESSAGE = {"model": "fake", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
BILLING = "x-anthropic-billing-header: cc_version=2.1.284.dd4; cc_entrypoint=sdk-cli; cch=1a2b3;"


async def error(client, path: str, body: dict) -> dict:
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    return response.json()["error"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs.enable_thinking"),
        ({"reasoning_budget_tokens": 5}, "reasoning_budget_tokens"),  # above max_tokens (3)
        ({"reasoning_budget_tokens": -1}, "reasoning_budget_tokens"),
        ({"grammar": 'start: "a" undefined_rule'}, "grammar"),
    ],
)
async def test_chat_reasoning_fields_are_checked(client, extra, param):
    assert (await error(client, "/v1/chat/completions", {**CHAT, **extra}))["param"] == param


async def test_chat_accepts_what_reasoning_clients_send(client):
    history = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "greet back"},
        {"role": "user", "content": "again"},
    ]
    body = {
        **CHAT,
        "messages": history,
        "reasoning_effort": "high",
        "chat_template_kwargs": {"enable_thinking": True},
    }
    reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": -1}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4}}, "thinking.budget_tokens"),  # > max_tokens
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
    ],
)
async def test_messages_thinking_is_checked(client, extra, param):
    detail = await error(client, "/v1/messages", {**MESSAGE, **extra})
    assert detail["type"] == "invalid_request_error" and param in detail["message"]


async def test_messages_accept_what_claude_code_sends(client):
    body = {
        **MESSAGE,
        "max_tokens": 32000,  # clamped to the room the prompt leaves
        "system": [
            {"type": "text", "text": BILLING},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "system", "content": "A reminder between turns."},
            {"role": "user", "content": "go on"},
        ],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"device_id": "d"}'},
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "tools": [
            {
                "name": "Bash",
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "additionalProperties": False,
                },
                "cache_control": {"type": "ephemeral"},
            }
        ],
    }
    reply = await client.post("/v1/messages", json=body)
    assert reply.status_code == 200, reply.text
    without_billing = {**body, "system": body["system"][1:]}
    same = await client.post("/v1/messages", json=without_billing)
    assert reply.json()["usage"] == same.json()["usage"]  # the billing line never reaches the prompt


async def test_a_thinking_block_we_did_not_sign_is_refused(client):
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "forged"}]},
        {"role": "user", "content": "and?"},
    ]
    detail = await error(client, "/v1/messages", {**MESSAGE, "messages": turns})
    assert detail["message"].startswith("messages.1.content.0.signature")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"include": ["reasoning.everything"]}, "include[0]"),
        (
            {
                "tools": [
                    {
                        "type": "custom",
                        "name": "patch",
                        "format": {"type": "grammar", "syntax": "lark", "definition": "start: ("},
                    }
                ]
            },
            "tools[0].format",
        ),
        (
            {
                "input": [
                    {"type": "reasoning", "summary": [], "encrypted_content": "rmx1.AAAA.BBBB"},
                    {"role": "user", "content": "x"},
                ]
            },
            "input[0].encrypted_content",
        ),
    ],
)
async def test_responses_agent_fields_are_checked(client, extra, param):
    body = {"model": "fake", "input": "hi", "max_output_tokens": 3, **extra}
    assert (await error(client, "/v1/responses", body))["param"] == param


async def test_responses_accept_what_codex_sends_and_store_false_keeps_nothing(client):
    body = {
        "model": "fake",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "ok"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            },
            {
                "type": "custom",
                "name": "apply_patch",
                "format": {
                    "type": "grammar",
                    "syntax": "lark",
                    "definition": 'start: "*** Begin Patch" /[a-z]+/',
                },
            },
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "c1",
        "text": {"verbosity": "low"},
        "max_output_tokens": 3,
    }
    reply = await client.post("/v1/responses", json=body)
    assert reply.status_code == 200, reply.text
    assert (await client.get(f"/v1/responses/{reply.json()['id']}")).status_code == 404
