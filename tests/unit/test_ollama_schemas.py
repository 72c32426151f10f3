"""Ollama's request rules as pure functions: keep_alive, format, think, and /api/show's figures."""

from __future__ import annotations

import math

import pytest

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import ReasoningOptions
from radis_mlx.schemas.ollama.common import (
    format_schema,
    keep_alive_seconds,
    pool_ttl,
    reasoning_options,
)
from radis_mlx.schemas.ollama.models import model_info, parameter_size, parameters_text


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (300, 300.0),
        (0.0, 0.0),  # what the Python client sends for keep_alive=0
        (3600.5, 3600.5),
        (-1, math.inf),
        ("0", 0.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2m30s", 150.0),
        ("-1m", math.inf),
    ],
)
def test_keep_alive_as_ollama_reads_it(value, seconds):
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["300", "-1", "5 minutes", "m", "", "1d"])
def test_keep_alive_strings_need_go_units(value):
    with pytest.raises(InvalidRequestError) as error:
        keep_alive_seconds(value)
    assert error.value.param == "keep_alive"


def test_the_pool_ttl_of_a_keep_alive():
    # Unset and 0 leave the model's TTL alone (0 unloads the model after its request instead).
    assert [pool_ttl(s) for s in (None, 0.0, 90.0, math.inf)] == [None, None, 90.0, math.inf]


def test_format_and_think():
    assert format_schema(None) is None and format_schema("") is None
    assert format_schema("json") == {"type": "object"}
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert format_schema(schema) is schema
    with pytest.raises(InvalidRequestError, match="invalid format"):
        format_schema("xml")
    assert reasoning_options(None) == ReasoningOptions()
    assert reasoning_options(False) == ReasoningOptions(enabled=False)
    assert reasoning_options("max") == ReasoningOptions(effort="max")
    with pytest.raises(InvalidRequestError, match="invalid think value"):
        reasoning_options("extreme")


@pytest.mark.parametrize(
    ("meta", "size"),
    [
        ({"general.parameter_count": 8030261248}, "8.0B"),
        ({"general.parameter_count": 3212749888}, "3.2B"),
        ({"general.parameter_count": 7000000000}, "7B"),
        ({"general.parameter_count": 22565376}, "22.57M"),
        ({"general.parameter_count": 135000000}, "135M"),
        ({"general.parameter_count": 999}, "999"),
        ({"general.size_label": "135M"}, "135M"),
        ({}, ""),
    ],
)
def test_parameter_size_is_ollamas_human_number(meta, size):
    assert parameter_size(meta) == size


def test_model_info_hides_the_name_and_template_and_empties_long_arrays():
    meta = {
        "general.name": "x",
        "tokenizer.chat_template": "{{ x }}",
        "general.architecture": "llama",
        "tokenizer.ggml.tokens": list(range(10)),
        "llama.rope.dims": [1, 2],
    }
    shown = {"general.architecture": "llama", "tokenizer.ggml.tokens": [], "llama.rope.dims": [1, 2]}
    assert model_info(meta, verbose=False) == shown
    assert model_info(meta, verbose=True)["tokenizer.ggml.tokens"] == list(range(10))


def test_parameters_text_pads_keys_as_gos_format():
    text = parameters_text({"temperature": 0.7, "stop": ["<|im_end|>", "</s>"], "use_mmap": True})
    assert text.splitlines() == [
        "temperature                    0.7",
        'stop                           "<|im_end|>"',
        'stop                           "</s>"',
        "use_mmap                       true",
    ]
