"""Reading OpenAI error bodies in end-to-end tests."""

from __future__ import annotations

import openai


def error_of(exc: openai.APIStatusError) -> dict:
    """The `error` object of an SDK exception, checked to have exactly OpenAI's four fields."""
    body = exc.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]
