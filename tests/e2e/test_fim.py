"""Completions `suffix` (fill-in-the-middle) and `best_of`, end to end on both engines.

A model with a FIM template (declared in models.toml, or found in its vocabulary) gets the prompt and
suffix rendered into one ordinary completion prompt; a model without one refuses suffix with a 400.
"""

from __future__ import annotations

import openai
import pytest

from radis_mlx.generation.fim import render_fim
from tests.support.e2e import ENGINES, FIM_TEMPLATE
from tests.support.errors import error_of

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(params=ENGINES)
def fim_model(request) -> str:
    return f"smollm2-fim-{request.param}"


def test_suffix_without_fim_template_is_400_naming_suffix(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt=PREFIX, suffix="\n", max_tokens=4)
    error = error_of(info.value)
    assert error["param"] == "suffix" and "fill-in-the-middle" in error["message"]


def test_suffix_is_a_completion_of_the_rendered_template(client, fim_model):
    filled = client.completions.create(
        model=fim_model, prompt=PREFIX, suffix=SUFFIX, max_tokens=6, temperature=0
    )
    plain = client.completions.create(
        model=fim_model, prompt=render_fim(FIM_TEMPLATE, PREFIX, SUFFIX), max_tokens=6, temperature=0
    )
    assert filled.choices[0].text == plain.choices[0].text
    assert filled.choices[0].text  # something was generated
    assert filled.usage.prompt_tokens == plain.usage.prompt_tokens
    # The whole rendered prompt is counted: markers and suffix included.
    bare = client.completions.create(model=fim_model, prompt=PREFIX, max_tokens=1, temperature=0)
    assert filled.usage.prompt_tokens > bare.usage.prompt_tokens + 5


def test_suffix_stream_matches_non_stream(client, fim_model):
    options = {"model": fim_model, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 6, "temperature": 0}
    whole = client.completions.create(**options)
    chunks = list(client.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_suffix_with_echo_returns_prompt_then_middle(client, fim_model):
    options = {"model": fim_model, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 6, "temperature": 0}
    echoed = client.completions.create(**options, echo=True)
    middle = client.completions.create(**options)
    # The prompt as the client sent it (not the rendered template), then the generated middle.
    assert echoed.choices[0].text == PREFIX + middle.choices[0].text


def test_suffix_with_token_prompt_is_400_naming_suffix(client, fim_model):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=fim_model, prompt=[1, 2, 3], suffix=SUFFIX, max_tokens=2)
    assert error_of(info.value)["param"] == "suffix"


def test_special_token_text_in_a_prompt_is_one_token(client, model):
    # FIM templates carry special tokens as text: both engines must tokenize them as the token itself.
    one = client.completions.create(model=model, prompt="<|im_start|>", max_tokens=1, temperature=0)
    two = client.completions.create(model=model, prompt="<|im_start|><|im_end|>", max_tokens=1)
    assert (one.usage.prompt_tokens, two.usage.prompt_tokens) == (1, 2)


def test_empty_suffix_is_plain_completion(client, model):
    plain = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=4, temperature=0
    )
    empty = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=4, temperature=0, suffix=""
    )
    assert empty.choices[0].text == plain.choices[0].text


def test_best_of_equal_to_n_returns_n_choices(client, model):
    reply = client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=2, n=2, best_of=2, seed=3, temperature=1.0
    )
    assert [c.index for c in reply.choices] == [0, 1]


@pytest.mark.parametrize(("n", "best_of"), [(1, 2), (2, 3)])
def test_best_of_above_n_is_400_naming_best_of(client, model, n, best_of):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="Hi", max_tokens=2, n=n, best_of=best_of)
    assert error_of(info.value)["param"] == "best_of"
