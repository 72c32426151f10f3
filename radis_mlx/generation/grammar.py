"""Constrained decoding with llguidance (the grammar engine llama.cpp uses).

Engine-neutral: a JSON schema (or a custom tool's Lark or regex grammar) becomes an llguidance
grammar, and a schema feature llguidance cannot enforce is a 400 naming it. MLX applies the grammar as
a logits processor (engines/mlx/grammar_mask.py); llama.cpp (xllamacpp is built with llguidance) gets
the same constraint as lark text.

Output stays finite: an integer or number a JSON schema leaves unbounded gets at most 16 digits before
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
