"""What the benchmark measures, over any OpenAI-compatible streaming chat endpoint."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

DECODE_PROMPT = "Count from 1 to 1000, one number per line."


@dataclass
class Stream:
    """One streamed chat completion: TTFT, decode rate, completion tokens; `error` when it failed."""

    ttft: float = 0.0
    decode_tps: float = 0.0
    tokens: int = 0
    error: str | None = None
    text: str = ""
    prompt_tokens: int = 0


@dataclass
class Target:
    """An endpoint to measure: its chat URL and what its request bodies add (model name, cache flags)."""

    name: str
    url: str
    extra: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # a llama.cpp child's key


async def stream(client: httpx.AsyncClient, target: Target, body: dict[str, Any]) -> Stream:
    """Stream one chat completion; failures are counted, not raised."""
    payload = {**body, **target.extra, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = last = 0.0
    tokens, prompt_tokens, pieces = 0, 0, []
    try:
        async with client.stream("POST", target.url, json=payload, headers=target.headers) as response:
            if response.status_code != 200:
                return Stream(error=f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = msgspec.json.decode(line[6:])
                if "error" in event:
                    return Stream(error=str(event["error"])[:200])
                if usage := event.get("usage"):
                    tokens, prompt_tokens = usage["completion_tokens"], usage["prompt_tokens"]
                for choice in event.get("choices") or []:
                    if content := (choice.get("delta") or {}).get("content"):
                        pieces.append(content)
                        last = time.perf_counter()
                        first = first or last
    except httpx.HTTPError as exc:
        return Stream(error=f"{type(exc).__name__}: {exc}")
    decode = (tokens - 1) / (last - first) if last > first else 0.0
    return Stream(first - started if first else 0.0, decode, tokens, None, "".join(pieces), prompt_tokens)


def decode_body(tokens: int) -> dict[str, Any]:
    """The greedy request the decode and concurrency figures use."""
    return {"messages": [{"role": "user", "content": DECODE_PROMPT}], "max_tokens": tokens, "temperature": 0}


async def aggregate(
    client: httpx.AsyncClient, target: Target, tokens: int, streams: int
) -> tuple[float, int, int]:
    """Completion tokens per second over `streams` concurrent streams, how many failed, and the tokens."""
    started = time.perf_counter()
    results = await asyncio.gather(*(stream(client, target, decode_body(tokens)) for _ in range(streams)))
    wall = time.perf_counter() - started
    total = sum(r.tokens for r in results)
    return total / wall, sum(r.error is not None for r in results), total


def shared_prefix(words: int) -> str:
    """A system prompt of about `words` × 1.5 tokens, unique per call (a fresh id first: nothing cached)."""
    notes = [
        f"Note {i}: item {i} is stored in box {i * 7 % 31} on shelf {i % 5}." for i in range(words // 12)
    ]
    return f"Session {uuid.uuid4().hex[:12]}. Reference notes follow.\n" + "\n".join(notes)


@dataclass
class Turns:
    cold_ttft: float
    second_ttft: float
    prompt_tokens: int
    error: str | None = None


async def two_turns(client: httpx.AsyncClient, target: Target, prefix_words: int, tokens: int) -> Turns:
    """A chat's first turn on a fresh ~600-token prefix (cold), then its second turn (prefix reusable)."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": shared_prefix(prefix_words)},
        {"role": "user", "content": "Where is item 3?"},
    ]
    first = await stream(client, target, {"messages": messages, "max_tokens": tokens, "temperature": 0})
    if first.error:
        return Turns(0, 0, 0, first.error)
    messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And item 4?"}]
    second = await stream(client, target, {"messages": messages, "max_tokens": tokens, "temperature": 0})
    return Turns(first.ttft, second.ttft, first.prompt_tokens, second.error)
