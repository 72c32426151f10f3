"""llama.cpp's prompt cache with the default settings (cache_prompt on): cached_tokens reported.

Its own server: the shared suite pins cache_prompt off for reproducible greedy repeats. The greedy
answer with a cache hit is not asserted equal to the cold one: llama.cpp's CPU kernels are not
batch-invariant, so a prefix reused from a slot and a suffix evaluated alone can flip a near-tie
(a fresh-clone CI run saw "The item 3 is in box 28." become "The item that is not in box 3 is
item 3." on a cache hit).
"""

from __future__ import annotations

import uuid

import pytest
from openai import OpenAI

from tests.support.e2e import VISION_DIR, build_vision_models
from tests.support.images import data_url, image_bytes, user_with_image
from tests.support.server import STARTER_SOURCE, RunningServer

MODEL = "cached"
CONFIG = f"""[models.cached]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048

[models.vision]
source = "./{VISION_DIR}/gguf/tiny-smolvlm.gguf"
kind = "vlm"
context_length = 1024
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory, smollm_gguf):
    workdir = tmp_path_factory.mktemp("prompt-cache")
    build_vision_models(workdir)
    running = RunningServer(CONFIG, workdir).wait_ready()
    yield OpenAI(base_url=running.url, api_key="x", max_retries=0, timeout=120)
    assert running.stop() == 0, running.log_tail()


def conversation() -> list[dict[str, str]]:
    # A fresh system prompt (a new id first) of ~250 tokens: nothing of it is cached yet.
    notes = "\n".join(f"Note {i}: item {i} is in box {i * 7 % 31}." for i in range(25))
    system = f"Session {uuid.uuid4().hex[:8]}. You answer from these notes.\n{notes}"
    return [{"role": "system", "content": system}, {"role": "user", "content": "Where is item 3?"}]


def ask(client, messages, **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=16, **kwargs
    )


def test_a_resent_prefix_is_served_from_the_cache(client):
    messages = conversation()
    cold = ask(client, messages)
    again = ask(client, messages)
    assert cold.usage.prompt_tokens_details.cached_tokens < 10  # only the template's opening can match
    # All but the last prompt token come from the slot's cache (llama.cpp re-evaluates one for its logits).
    assert again.usage.prompt_tokens_details.cached_tokens >= again.usage.prompt_tokens - 2
    assert again.choices[0].finish_reason in ("stop", "length")
    # The second turn resends the first: its prefix is cached; the stream reports it in its usage too.
    messages += [
        {"role": "assistant", "content": cold.choices[0].message.content},
        {"role": "user", "content": "And item 4?"},
    ]
    chunks = list(ask(client, messages, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert cold.usage.prompt_tokens - 2 <= usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens


def test_completions_report_cached_tokens(client):
    prompt = conversation()[0]["content"]
    first = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0)
    second = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens >= second.usage.prompt_tokens - 2
    assert first.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens_details.cached_tokens


def test_the_child_reuses_an_image_only_for_that_image(client):
    def cached(picture: bytes):
        reply = client.chat.completions.create(
            model="vision", messages=user_with_image(data_url(picture)), temperature=0, max_tokens=4
        )
        return reply.usage.prompt_tokens_details.cached_tokens, reply.usage.prompt_tokens

    one, other = image_bytes((90, 10, 10)), image_bytes((10, 90, 10))
    assert cached(one)[0] < 10
    again, prompt = cached(one)
    assert again >= prompt - 2  # the image's tokens too
    assert cached(other)[0] < 10  # the text before the image only
