"""Reading server-sent event streams in tests."""

from __future__ import annotations

import json


def data_events(text: str) -> list[str]:
    """The data of an OpenAI-style stream that ends with `data: [DONE]`, [DONE] included."""
    assert text.endswith("data: [DONE]\n\n")
    return [line[len("data: ") :] for line in text.split("\n\n") if line]


def named_events(text: str) -> list[tuple[str, dict]]:
    """(event name, JSON data) of a stream whose events are named (Responses, Anthropic Messages)."""
    events = []
    for frame in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events
