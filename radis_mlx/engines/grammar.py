"""Constrained decoding with llguidance (the grammar engine llama.cpp uses).

Engine-neutral: a JSON schema becomes an llguidance grammar, and a schema feature llguidance
cannot enforce is a 400 naming it. MLX applies the grammar as a logits processor (`GrammarMask`);
llama.cpp (xllamacpp is built with llguidance) gets the same constraint as lark text.
"""

from __future__ import annotations

import json
from typing import Any

from radis_mlx.errors import EngineError, InvalidRequestError

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
        raise _schema_error(str(exc), param) from None
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise _schema_error(messages[0] if messages else "invalid schema", param)
    return grammar


def schema_lark(schema: dict[str, Any]) -> str:
    """The same constraint as llguidance lark text, for a llama.cpp built with llguidance."""
    return "%llguidance {}\nstart: %json " + json.dumps({**schema, "x-guidance": JSON_OPTIONS})


def _schema_error(detail: str, param: str = "response_format") -> InvalidRequestError:
    return InvalidRequestError(f"{param}: this JSON schema cannot be enforced: {detail}", param=param)


class GrammarMask:
    """An mlx-lm logits processor: forbids tokens the grammar cannot take next.

    mlx-lm calls it with every token so far (prompt included) before each sampling step; the tokens
    after the prompt are fed to the matcher first. Once the grammar is complete only EOS is allowed.
    """

    def __init__(self, tokenizer: Any, grammar: str, prompt_length: int) -> None:
        import llguidance
        import llguidance.numpy

        self.matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise _schema_error(self.matcher.get_error())
        self._seen = prompt_length
        self._bitmask = llguidance.numpy.allocate_token_bitmask(1, tokenizer.vocab_size)
        self._fill = llguidance.numpy.fill_next_token_bitmask

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        new: list[int] = tokens[self._seen :].tolist() if tokens.size > self._seen else []
        self._seen = tokens.size
        if new and self.matcher.is_stopped():
            return logits  # this follows the forced EOS: mlx-lm's step ahead, never used
        if new and not self.matcher.consume_tokens(new):
            raise EngineError(f"the grammar rejected a sampled token: {self.matcher.get_error()}")
        self._fill(self.matcher, self._bitmask)
        # Unpack 32 allowed-bits per int32 word with plain mx ops (llguidance.mlx needs Metal).
        words = mx.array(self._bitmask)
        bits = (words[..., None] >> mx.arange(32, dtype=mx.int32)) & 1
        allowed = bits.reshape(1, -1)[:, : logits.shape[-1]]
        if allowed.shape[-1] < logits.shape[-1]:  # the model's vocabulary is padded past the tokenizer's
            allowed = mx.pad(allowed, [(0, 0), (0, logits.shape[-1] - allowed.shape[-1])])
        return mx.where(allowed.astype(mx.bool_), logits, -mx.inf)
