"""Constrained decoding with llguidance (the grammar engine llama.cpp uses).

Engine-neutral: a JSON schema becomes an llguidance grammar, and a schema feature llguidance
cannot enforce is a 400 naming it. MLX applies the grammar as a logits processor
(engines/mlx/grammar_mask.py); llama.cpp (xllamacpp is built with llguidance) gets the same
constraint as lark text.
"""

from __future__ import annotations

import json
from typing import Any

from radis_mlx.errors import InvalidRequestError

# Compact one-line JSON ("a": 1, "b": 2): a small model cannot wander off into endless whitespace.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# What `{"type": "json_object"}` asks for: any JSON object.
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def schema_grammar(schema: dict[str, Any], param: str = "response_format") -> str:
    """The llguidance grammar for a JSON schema; one it cannot enforce is a request error naming `param`."""
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
    except ValueError as exc:
        raise schema_error(str(exc), param) from None
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise schema_error(messages[0] if messages else "invalid schema", param)
    return grammar


def schema_lark(schema: dict[str, Any]) -> str:
    """The same constraint as llguidance lark text, for a llama.cpp built with llguidance."""
    return "%llguidance {}\nstart: %json " + json.dumps({**schema, "x-guidance": JSON_OPTIONS})


def schema_error(detail: str, param: str = "response_format") -> InvalidRequestError:
    return InvalidRequestError(f"{param}: this JSON schema cannot be enforced: {detail}", param=param)
