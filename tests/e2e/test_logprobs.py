"""logprobs on chat and completions end to end, on both engines."""

from __future__ import annotations

import math

from tests.support.e2e import FRANCE


def chat_logprobs(client, model, **kwargs):
    return client.chat.completions.create(model=model, messages=FRANCE, max_tokens=8, logprobs=True, **kwargs)


def test_greedy_chat_logprobs_pick_the_top_token_and_spell_the_content(client, model):
    reply = chat_logprobs(client, model, temperature=0, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens or reply.choices[0].finish_reason == "stop"
    assert b"".join(bytes(t.bytes) for t in content) == reply.choices[0].message.content.encode()
    for token in content:
        assert len(token.top_logprobs) == 3
        assert token.token == token.top_logprobs[0].token
        assert math.isclose(token.logprob, token.top_logprobs[0].logprob, abs_tol=1e-6)
        assert token.logprob <= 0
        logprobs = [t.logprob for t in token.top_logprobs]
        assert logprobs == sorted(logprobs, reverse=True)


def test_sampled_chat_logprobs_contain_the_chosen_token(client, model):
    reply = chat_logprobs(client, model, temperature=1.0, seed=11, top_logprobs=20)
    for token in reply.choices[0].logprobs.content:
        assert token.logprob <= 0
        assert token.token in {t.token for t in token.top_logprobs}


def test_stream_logprobs_equal_non_stream_for_greedy(client, model):
    plain = chat_logprobs(client, model, temperature=0, top_logprobs=2).choices[0].logprobs.content
    chunks = list(chat_logprobs(client, model, temperature=0, top_logprobs=2, stream=True))
    streamed = [
        t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content
    ]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in plain]


def test_no_logprobs_unless_asked_and_zero_top_logprobs(client, model):
    reply = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=2, temperature=0)
    assert reply.choices[0].logprobs is None
    bare = chat_logprobs(client, model, temperature=0, top_logprobs=0)
    assert all(t.top_logprobs == [] for t in bare.choices[0].logprobs.content)


def test_completions_logprobs_shape(client, model):
    reply = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2
    )
    choice = reply.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(4)]
    for token, logprob, top in zip(
        logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True
    ):
        assert len(top) == 2 and max(top.values()) == logprob and top[token] == logprob
    chunks = list(
        client.completions.create(
            model=model,
            prompt="The capital of France is",
            max_tokens=4,
            temperature=0,
            logprobs=2,
            stream=True,
        )
    )
    streamed = [
        t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens
    ]
    offsets = [
        o for c in chunks if c.choices and c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset
    ]
    assert streamed == logprobs.tokens and offsets == logprobs.text_offset


def test_stop_string_cuts_logprobs_with_the_text(client, model):
    full = chat_logprobs(client, model, temperature=0).choices[0]
    stop = full.message.content[len(full.message.content) // 2 :][:4]
    cut = chat_logprobs(client, model, temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop"
    spelled = b"".join(bytes(t.bytes) for t in cut.logprobs.content)
    assert spelled.startswith(cut.message.content.encode())
    assert len(cut.logprobs.content) < len(full.logprobs.content)
