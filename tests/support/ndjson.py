"""Reading Ollama's NDJSON streams in tests, as strictly as its clients read them."""

from __future__ import annotations

import json


def ndjson_lines(text: str) -> list[dict]:
    """Every line of an NDJSON body as JSON objects; fails on a blank line or a missing final newline
    (the official clients json.loads every line, so a blank keep-alive line would crash them)."""
    assert text.endswith("\n"), repr(text[-80:])
    lines = text[:-1].split("\n")
    assert all(lines), f"blank line in {text!r}"
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects)
    return objects
