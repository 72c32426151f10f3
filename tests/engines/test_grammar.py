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
