"""Completions `suffix` (fill-in-the-middle) and `best_of`: refused with a 400 naming them, never ignored.

The starter model's vocabulary has no FIM tokens, so suffix must be refused on both engines.
"""

from __future__ import annotations

import openai
import pytest

from tests.e2e.openai_errors import error_of


def test_suffix_without_fim_tokens_is_400_naming_suffix(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="def add(a, b):\n    ", suffix="\n", max_tokens=4)
    error = error_of(info.value)
    assert error["param"] == "suffix" and "fill-in-the-middle" in error["message"]


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
