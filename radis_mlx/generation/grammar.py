"""Constrained decoding with llguidance (the grammar engine llama.cpp uses).

Engine-neutral: a JSON schema becomes an llguidance grammar, and a schema feature llguidance
cannot enforce is a 400 naming it. MLX applies the grammar as a logits processor
(engines/mlx/grammar_mask.py); llama.cpp (xllamacpp is built with llguidance) gets the same
constraint as lark text.

Output stays finite: an integer or number the schema leaves unbounded gets at most 16 digits before
the point (as llama.cpp's own schema converter allows) and 10 after it (llguidance's `multipleOf`
goes no finer), so a small model cannot write `"population": 1111…` until max_tokens cuts the JSON.
Strings follow `maxLength` where the schema has one.
"""

from __future__ import annotations

import json
from typing import Any

from radis_mlx.errors import InvalidRequestError

# Compact one-line JSON ("a": 1, "b": 2): a small model cannot wander off into endless whitespace.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# What `{"type": "json_object"}` asks for: any JSON object.
ANY_OBJECT: dict[str, Any] = {"type": "object"}


# 16 digits before the point, 10 after; keywords whose values are data, not schemas.
NUMBER_BOUND = 10**16 - 1
DECIMAL_STEP = 1e-10
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def bounded_numbers(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` where every integer or number without a bound gets one (see above)."""
    root = dict(schema)
    stack = [root]
    while stack:  # iterative: a schema may nest as deep as the body decoder allows
        node = stack.pop()
        _bound(node)
        for key, value in node.items():
            if key in _DATA_KEYWORDS:
                continue
            if isinstance(value, dict):
                node[key] = child = dict(value)
                stack.append(child)
            elif isinstance(value, list):
                node[key] = items = [dict(v) if isinstance(v, dict) else v for v in value]
                stack.extend(v for v in items if isinstance(v, dict))
    return root


def _bound(node: dict[str, Any]) -> None:
    kinds = node.get("type")
    kinds = {kinds} if isinstance(kinds, str) else set(kinds) if isinstance(kinds, list) else set()
    if not kinds & {"integer", "number"}:
        return
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    numeric = (int, float)
    if low is None and not (isinstance(high, numeric) and high < -NUMBER_BOUND):
        node["minimum"] = -NUMBER_BOUND
    if high is None and not (isinstance(low, numeric) and low > NUMBER_BOUND):
        node["maximum"] = NUMBER_BOUND
    if "number" in kinds and "multipleOf" not in node:
        node["multipleOf"] = DECIMAL_STEP


def schema_grammar(schema: dict[str, Any], param: str = "response_format") -> str:
    """The llguidance grammar for a JSON schema; one it cannot enforce is a request error naming `param`."""
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(bounded_numbers(schema), defaults=JSON_OPTIONS)  # type: ignore[arg-type]
    except ValueError as exc:
        raise schema_error(str(exc), param) from None
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise schema_error(messages[0] if messages else "invalid schema", param)
    return grammar


def schema_lark(schema: dict[str, Any]) -> str:
    """The same constraint as llguidance lark text, for a llama.cpp built with llguidance."""
    return "%llguidance {}\nstart: %json " + json.dumps(
        {**bounded_numbers(schema), "x-guidance": JSON_OPTIONS}
    )


def schema_error(detail: str, param: str = "response_format") -> InvalidRequestError:
    return InvalidRequestError(f"{param}: this JSON schema cannot be enforced: {detail}", param=param)
