"""/v1/completions end to end on the real starter model."""

from __future__ import annotations

PROMPT = "The capital of France is"


def complete(client, model, prompt=PROMPT, **kwargs):
    return client.completions.create(model=model, prompt=prompt, temperature=0, **kwargs)


def test_string_prompt(client, model):
    reply = complete(client, model, max_tokens=4)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens <= 4 and reply.choices[0].text
    # The continuation keeps its leading space ("... France is" + " Paris").
    assert reply.choices[0].text.startswith(" "), reply.choices[0].text


def test_default_max_tokens_is_16(client, model):
    reply = complete(client, model, prompt="Once upon a time")
    assert reply.usage.completion_tokens == 16 or reply.choices[0].finish_reason == "stop"


def test_list_of_prompts_one_choice_each_in_order(client, model):
    other = "Water is made of"
    batch = complete(client, model, prompt=[PROMPT, other], max_tokens=3)
    singles = [complete(client, model, prompt=p, max_tokens=3).choices[0].text for p in (PROMPT, other)]
    assert [c.index for c in batch.choices] == [0, 1]
    assert [c.text for c in batch.choices] == singles


def test_token_prompts_count_exactly(client, model):
    tokens = [504, 3575, 282, 4649, 314]
    reply = complete(client, model, prompt=tokens, max_tokens=2)
    assert reply.usage.prompt_tokens == len(tokens)
    assert reply.usage.completion_tokens == 2
    batch = complete(client, model, prompt=[tokens, tokens[:3]], max_tokens=2)
    assert batch.usage.prompt_tokens == len(tokens) + 3
    assert batch.choices[0].text == reply.choices[0].text


def test_echo_prepends_prompt(client, model):
    reply = complete(client, model, max_tokens=3, echo=True)
    plain = complete(client, model, max_tokens=3)
    assert reply.choices[0].text == PROMPT + plain.choices[0].text
    tokens = complete(client, model, prompt=[504, 3575], max_tokens=1, echo=True)
    assert len(tokens.choices[0].text) > 1


def test_stream_equals_non_stream(client, model):
    plain = complete(client, model, max_tokens=6)
    chunks = list(complete(client, model, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_stop_in_completions(client, model):
    full = complete(client, model, max_tokens=8).choices[0].text
    stop = full.strip()[:3]
    reply = complete(client, model, max_tokens=8, stop=stop)
    assert reply.choices[0].text == full[: full.index(stop)]
    assert reply.choices[0].finish_reason == "stop"
