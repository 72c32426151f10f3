"""Schemathesis against our own OpenAPI document, in process, on the fake engine.

Every operation gets bounded generated requests (valid and invalid); no response may be a 5xx,
invalid requests must be refused, and every response must match the documented status codes,
content types, headers and schemas.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.fakes import fake_app

schema = schemathesis.openapi.from_asgi("/openapi/openapi.json", fake_app())


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    # Schema-valid is not always acceptable: a float where an int goes, an image part for a text
    # model or logprobs we do not implement yet get a documented 400, as OpenAI would answer.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


HI = [{"role": "user", "content": "hi"}]
STREAMS = [
    ("/api/v0/models/pull", {"model": "org/model"}),
    ("/v1/chat/completions", {"model": "fake", "messages": HI, "stream": True}),
    ("/v1/completions", {"model": "fake", "prompt": "hi", "stream": True}),
    ("/api/chat", {"model": "fake", "messages": HI}),  # Ollama's: NDJSON unless stream is false
    ("/api/generate", {"model": "fake", "prompt": "hi"}),
    ("/api/pull", {"model": "org/model"}),
]


@pytest.mark.parametrize(("path", "body"), STREAMS, ids=[path for path, _ in STREAMS])
def test_streamed_events_match_their_documented_schema(path, body):
    # Generated cases reach a stream only by chance (a CI run found the pull stream's schema wrong once).
    schema[path]["POST"].Case(body=body).call_and_validate(excluded_checks=[positive_data_acceptance])
