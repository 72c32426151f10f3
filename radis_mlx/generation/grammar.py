"""Constrained decoding with llguidance (the grammar engine llama.cpp uses).

Engine-neutral: a JSON schema (or a custom tool's Lark or regex grammar) becomes an llguidance
grammar, and a schema feature llguidance cannot enforce is a 400 naming it. MLX applies the grammar as
a logits processor (engines/mlx/grammar_mask.py); llama.cpp (xllamacpp is built with llguidance) gets
the same constraint as lark text.
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


def lark_text(definition: str, syntax: str, param: str) -> str:
    """A grammar given as Lark (llguidance's dialect) or a regex, as Lark text; invalid → 400 naming param."""
    from llguidance import LLMatcher, regex_to_lark

    lark = definition if syntax == "lark" else "start: /" + regex_to_lark(definition) + "/"
    try:
        is_error, messages = LLMatcher.validate_grammar_with_warnings(LLMatcher.grammar_from_lark(lark))
    except ValueError as exc:
        is_error, messages = True, [str(exc)]
    if is_error:
        detail = messages[0].splitlines()[0] if messages else "invalid grammar"
        raise InvalidRequestError(f"{param}: this {syntax} grammar is invalid: {detail}", param=param)
    return lark


def constraint_grammar(json_schema: dict[str, Any] | None, lark: str | None) -> str | None:
    """The llguidance grammar a generation must match: its JSON schema's, or its Lark text's."""
    from llguidance import LLMatcher

    if json_schema is not None:
        return schema_grammar(json_schema)
    return LLMatcher.grammar_from_lark(lark) if lark is not None else None


def constraint_lark(json_schema: dict[str, Any] | None, lark: str | None) -> str | None:
    """The same constraint as lark text for a llama.cpp built with llguidance (`%llguidance` header)."""
    if json_schema is not None:
        return schema_lark(json_schema)
    return "%llguidance {}\n" + lark if lark is not None else None
