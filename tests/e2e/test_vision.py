"""Images in, end to end: the tiny real vision model (tests/support/tiny_vlm.py) on MLX (mlx-vlm) and on
llama.cpp (GGUF + mmproj), through the official SDKs on chat completions, Responses and Messages.

Random weights write noise, but deterministic noise: the tests assert what the image does to it (two images
give two answers, the same image the same one on every API), the counts, the prompt cache, and every 400.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import ollama
import pytest
from openai import BadRequestError, OpenAI

from tests.support.e2e import ENGINES, VISION_MODELS
from tests.support.errors import error_of
from tests.support.images import (
    BLUE,
    RED,
    anthropic_image,
    chat_image,
    data_url,
    image_bytes,
    user_with_image,
)
from tests.support.tiny_vlm import IMAGE_TOKENS

QUESTION = "What is in this image?"
GREEDY = {"temperature": 0, "max_tokens": 8}
COLOR = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "blue"]}},
    "required": ["color"],
    "additionalProperties": False,
}


@pytest.fixture(params=ENGINES)
def vlm(request) -> str:
    return VISION_MODELS[request.param]


@pytest.fixture(scope="module")
def claude(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base, api_key="anything", max_retries=0, timeout=300)


def ask(client: OpenAI, model: str, picture: bytes, **kwargs):
    return client.chat.completions.create(
        model=model, messages=user_with_image(data_url(picture), QUESTION), **{**GREEDY, **kwargs}
    )


def test_models_list_their_input_modalities(client, server):
    listed = {m.id: m for m in client.models.list().data}
    assert all(listed[m].input_modalities == ["text", "image"] for m in VISION_MODELS.values())
    assert listed["smollm2-mlx"].input_modalities == ["text"]
    lm_studio = httpx.get(f"{server.base}/api/v0/models", timeout=30).json()["data"]
    kinds = {m["id"]: m["type"] for m in lm_studio}
    assert kinds[VISION_MODELS["llamacpp"]] == "vlm" and kinds["smollm2-llamacpp"] == "llm"


def test_the_image_reaches_the_model_and_its_tokens_are_counted(client, vlm):
    # Colors of this test's own: the shared server's prompt cache holds other tests' images.
    one, two = image_bytes((201, 30, 77)), image_bytes((20, 160, 240), (50, 80))
    first, other, again = ask(client, vlm, one), ask(client, vlm, two), ask(client, vlm, one)
    text = first.choices[0].message.content
    assert text == again.choices[0].message.content != other.choices[0].message.content
    plain = client.chat.completions.create(
        model=vlm, messages=[{"role": "user", "content": QUESTION}], **GREEDY
    )
    assert first.usage.prompt_tokens >= plain.usage.prompt_tokens + IMAGE_TOKENS
    if vlm == VISION_MODELS["mlx"]:  # the engine that caches here (the suite's llama.cpp does not)
        assert first.usage.prompt_tokens_details.image_tokens == IMAGE_TOKENS
        assert again.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens - 1
        # The other image shares the text before the image only: its KV was never the first one's.
        assert other.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens - IMAGE_TOKENS


def test_responses_and_messages_send_the_image_as_chat_does(client, claude, vlm):
    chat = ask(client, vlm, BLUE)
    response = client.responses.create(
        model=vlm,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": data_url(BLUE)},
                    {"type": "input_text", "text": QUESTION},
                ],
            }
        ],
        max_output_tokens=8,
        temperature=0,
    )
    assert response.output_text == chat.choices[0].message.content
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    message = claude.messages.create(
        model=vlm,
        max_tokens=8,
        messages=[{"role": "user", "content": [anthropic_image(BLUE), {"type": "text", "text": QUESTION}]}],
        extra_body={"temperature": 0},
    )
    assert "".join(b.text for b in message.content) == chat.choices[0].message.content
    usage = message.usage
    assert usage.input_tokens + usage.cache_read_input_tokens == chat.usage.prompt_tokens


def test_ollamas_api_sends_the_image_as_chat_does(client, server, vlm):
    chat = ask(client, vlm, BLUE)
    with ollama.Client(host=server.base, timeout=300) as native:
        reply = native.chat(
            model=vlm,
            messages=[{"role": "user", "content": QUESTION, "images": [BLUE]}],
            options={"temperature": 0, "num_predict": 8},
        )
        assert "vision" in native.show(vlm).capabilities
        assert "vision" not in native.show("smollm2-mlx").capabilities
    assert reply.message.content == chat.choices[0].message.content
    assert reply.prompt_eval_count == chat.usage.prompt_tokens


def test_webp_jpeg_and_a_gifs_first_frame_are_read(client):
    # The same pixels as PNG, lossless WebP and GIF (a second, black frame ignored): the same answer.
    png, gif = image_bytes((240, 200, 10)), image_bytes((240, 200, 10), fmt="GIF")
    webp = image_bytes((240, 200, 10), fmt="WEBP")
    model = VISION_MODELS["llamacpp"]  # llama.cpp itself reads no WebP: the server hands it a PNG
    answers = {ask(client, model, data).choices[0].message.content for data in (png, gif)}
    assert len(answers) == 1
    reply = client.chat.completions.create(
        model=model, messages=user_with_image(data_url(webp, "image/webp"), QUESTION), **GREEDY
    )
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert ask(client, model, image_bytes((240, 200, 10), fmt="JPEG")).usage.prompt_tokens > 0


def test_streaming_tools_and_structured_output_work_with_an_image(client, vlm):
    whole = ask(client, vlm, RED).choices[0].message.content
    stream = client.chat.completions.create(
        model=vlm, messages=user_with_image(data_url(RED), QUESTION), stream=True, **GREEDY
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole
    tool = {"type": "function", "function": {"name": "report_color", "parameters": COLOR}}
    called = ask(
        client, vlm, RED, tools=[tool], tool_choice="required", parallel_tool_calls=False, max_tokens=64
    )
    if vlm == VISION_MODELS["mlx"]:  # the tool prompt keeps the image
        assert called.usage.prompt_tokens_details.image_tokens == IMAGE_TOKENS
    (call,) = called.choices[0].message.tool_calls
    assert call.function.name == "report_color" and json.loads(call.function.arguments)["color"] in (
        "red",
        "blue",
    )
    schema = {"type": "json_schema", "json_schema": {"name": "color", "schema": COLOR}}
    shaped = ask(client, vlm, BLUE, response_format=schema, max_tokens=32)
    assert json.loads(shaped.choices[0].message.content)["color"] in ("red", "blue")


def test_reasoning_is_kept_apart_with_an_image_in_the_prompt(client, vlm):
    thinking = 'start: "<think>" /[a-z ]{4,12}/ "</think>" /[a-z]{2,8}/'
    reply = ask(client, vlm, RED, max_tokens=40, extra_body={"grammar": thinking})
    message = reply.choices[0].message.model_dump()
    assert message["reasoning_content"] and message["content"] and "think>" not in message["content"]
    assert 0 < reply.usage.completion_tokens_details.reasoning_tokens < reply.usage.completion_tokens
    assert reply.usage.prompt_tokens > IMAGE_TOKENS


def _bad(client, messages, model=VISION_MODELS["mlx"]):
    with pytest.raises(BadRequestError) as error:
        client.chat.completions.create(model=model, messages=messages, **GREEDY)
    return error_of(error.value)


TINY = image_bytes((1, 2, 3), (8, 8))
BAD_URLS = {
    "not base64": lambda: "data:image/png;base64,@@not-base64@@",
    "not an image type": lambda: data_url(b"hello", "text/plain"),
    "not an image": lambda: data_url(b"\x89PNG\r\n\x1a\n garbage"),
    "truncated": lambda: data_url(RED[: len(RED) // 2]),
    "too many pixels": lambda: data_url(image_bytes((9, 9, 9), (6000, 6000))),  # 36 Mpx, a small file
    "a URL, not fetched": lambda: "https://images.example/cat.png",
    "a file": lambda: "file:///etc/passwd",
}
CODES = {"too many pixels": "image_too_large", "a URL, not fetched": "image_url_not_fetched"}


@pytest.mark.parametrize("case", list(BAD_URLS))
def test_bad_images_are_400_naming_the_field(client, case):
    body = _bad(client, user_with_image(BAD_URLS[case]()))
    assert (body["code"], body["param"]) == (
        CODES.get(case, "invalid_image"),
        "messages[0].content[0].image_url",
    )


def test_too_many_images_and_images_outside_user_turns_are_400(client):
    many = [{"role": "user", "content": [chat_image(data_url(TINY))] * 17}]
    body = _bad(client, many)
    assert (body["code"], body["param"]) == ("too_many_images", "messages[0].content[16].image_url")
    system = [{"role": "system", "content": [chat_image(data_url(TINY))]}, *user_with_image(data_url(TINY))]
    assert _bad(client, system)["param"] == "messages[0].content"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_text_only_model_refuses_images_on_every_api(client, claude, engine):
    body = _bad(client, user_with_image(data_url(TINY)), model=f"smollm2-{engine}")
    assert (body["code"], body["param"]) == ("image_input_unsupported", "messages[0].content[0].image_url")
    with pytest.raises(BadRequestError) as error:
        client.responses.create(
            model=f"smollm2-{engine}",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": data_url(TINY)}]}],
        )
    assert error_of(error.value)["param"] == "input[0].content[0].image_url"
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model=f"smollm2-{engine}",
            max_tokens=4,
            messages=[{"role": "user", "content": [anthropic_image(TINY)]}],
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert "does not accept images" in refused.value.body["error"]["message"]


def test_each_api_checks_images_its_own_way(client, claude):
    # Anthropic: the media type must match the bytes; Responses: file ids are not served.
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model=VISION_MODELS["mlx"],
            max_tokens=4,
            messages=[{"role": "user", "content": [anthropic_image(TINY, "image/jpeg")]}],
        )
    assert "not the image/jpeg" in refused.value.body["error"]["message"]
    with pytest.raises(BadRequestError) as error:
        client.responses.create(
            model=VISION_MODELS["mlx"],
            input=[{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
        )
    assert error_of(error.value)["param"] == "input[0].content[0].file_id"
