"""The llguidance glue: schema → grammar (or a 400), and the MLX token mask, without a server."""

from __future__ import annotations

import json

import jsonschema_rs
import llguidance.hf
import mlx.core as mx
import pytest
from transformers import AutoTokenizer

from radis_mlx.engines.mlx.gguf_to_mlx import convert_gguf
from radis_mlx.engines.mlx.grammar_mask import GrammarMask
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import schema_grammar

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tokenizer(smollm_gguf, tmp_path_factory):
    folder = convert_gguf(smollm_gguf, tmp_path_factory.mktemp("gguf-mlx"))
    return llguidance.hf.from_tokenizer(AutoTokenizer.from_pretrained(folder))


def test_unenforceable_schema_names_the_feature():
    with pytest.raises(InvalidRequestError) as info:
        schema_grammar({"type": "object", "dependentRequired": {"a": ["b"]}})
    assert info.value.param == "response_format" and "dependentRequired" in str(info.value)
    assert schema_grammar(CITY)


def test_mask_only_lets_schema_valid_json_through(tokenizer):
    prompt = [1, 2, 3]
    mask = GrammarMask(tokenizer, schema_grammar(CITY), len(prompt))
    tokens, key = list(prompt), mx.random.key(0)
    for _ in range(40):
        # Random logits stand in for a model: whatever is sampled, the grammar keeps it valid.
        key, sub = mx.random.split(key)
        logits = mask(mx.array(tokens), mx.random.normal((1, tokenizer.vocab_size), key=sub))
        token = int(mx.argmax(logits, axis=-1).item())
        if token == tokenizer.eos_token:
            break
        tokens.append(token)
    else:
        pytest.fail("the grammar never completed")
    text = tokenizer.decode_str(tokens[len(prompt) :])
    jsonschema_rs.validate(CITY, json.loads(text))
    # Complete: EOS is the only token left.
    logits = mask(mx.array(tokens), mx.zeros((1, tokenizer.vocab_size + 64)))
    allowed = mx.isfinite(logits).reshape(-1).tolist()
    assert [i for i, ok in enumerate(allowed) if ok] == [tokenizer.eos_token]


POPULATION = {
    "type": "object",
    "properties": {"population": {"type": "integer"}, "area": {"type": "number"}},
    "required": ["population", "area"],
    "additionalProperties": False,
}


def test_a_model_that_loves_digits_still_closes_the_json(tokenizer):
    """Logits that always prefer a digit: an unbounded integer would take digits until max_tokens;
    bounded like llama.cpp's converter (16 digits, 10 decimals), the object completes."""
    digits = {tokenizer.tokenize_str(d)[0] for d in "123456789"}
    prompt = [1, 2, 3]
    mask = GrammarMask(tokenizer, schema_grammar(POPULATION), len(prompt))
    tokens = list(prompt)
    preferred = mx.array([10.0 if i in digits else 0.0 for i in range(tokenizer.vocab_size)])[None]
    for _ in range(120):
        logits = mask(mx.array(tokens), preferred)
        token = int(mx.argmax(logits, axis=-1).item())
        if token == tokenizer.eos_token:
            break
        tokens.append(token)
    else:
        pytest.fail(f"the grammar never completed: {tokenizer.decode_str(tokens[len(prompt) :])[:120]}")
    reply = json.loads(tokenizer.decode_str(tokens[len(prompt) :]))
    jsonschema_rs.validate(POPULATION, reply)
    assert len(str(reply["population"])) <= 16 and abs(reply["area"]) < 1e16


def test_bounds_are_added_only_where_the_schema_leaves_them_open():
    from radis_mlx.generation.grammar import NUMBER_BOUND, bounded_numbers, schema_lark

    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0},
            "x": {"type": ["number", "null"], "multipleOf": 0.5},
            "c": {"const": {"type": "integer"}},  # data, not a schema: left alone
        },
    }
    out = bounded_numbers(schema)["properties"]
    assert out["n"] == {"type": "integer", "minimum": 0, "maximum": NUMBER_BOUND}
    assert out["x"] == {
        "type": ["number", "null"],
        "multipleOf": 0.5,
        "minimum": -NUMBER_BOUND,
        "maximum": NUMBER_BOUND,
    }
    assert out["c"] == {"const": {"type": "integer"}}
    assert schema["properties"]["n"] == {"type": "integer", "minimum": 0}  # the caller's copy is untouched
    assert f'"maximum": {NUMBER_BOUND}' in schema_lark(schema)  # llama.cpp's child gets the same bounds
