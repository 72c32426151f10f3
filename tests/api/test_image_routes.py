"""Images through the routes on a fake vision engine: what each API's image part becomes by the time an engine
sees it (decoded, normalized, hashed), the request limits, and URL fetching switched on (loopback refused)."""

from __future__ import annotations

import base64

import pytest
from litestar.testing import AsyncTestClient

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.generation.types import GenerationRequest, request_images
from radis_mlx.pool import ModelPool
from tests.support.fakes import FakeEngine
from tests.support.images import RED, data_url, image_bytes, user_with_image

pytestmark = pytest.mark.anyio


class SeeingEngine(FakeEngine):
    """A fake engine that reads images, and keeps the requests it was given."""

    input_modalities = ("text", "image")

    def __init__(self) -> None:
        super().__init__(context_length=4096)
        self.requests: list[GenerationRequest] = []

    def generate(self, request):
        self.requests.append(request)
        return super().generate(request)


@pytest.fixture
def engine() -> SeeingEngine:
    return SeeingEngine()


@pytest.fixture
async def client(engine, tmp_path):
    server = ServerSettings(
        allowed_hosts=["testserver.local"], fetch_image_urls=True, max_images=3, max_image_pixels=3 * 64 * 64
    )
    models = {"eyes": ModelEntry(source=str(tmp_path), kind="vlm"), "text": ModelEntry(source=str(tmp_path))}

    async def factory(model_id: str, entry: ModelEntry) -> FakeEngine:
        return engine if model_id == "eyes" else FakeEngine()

    config = Config(server=server, models=models)
    async with AsyncTestClient(app=create_app(config, ModelPool(config, factory=factory))) as test_client:
        yield test_client


async def chat(client, messages, **fields):
    return await client.post("/v1/chat/completions", json={"model": "eyes", "messages": messages, **fields})


async def test_every_api_hands_the_engine_a_decoded_image_in_place(client, engine):
    webp = image_bytes((10, 20, 30), (32, 16), fmt="WEBP")
    assert (await chat(client, user_with_image(data_url(webp, "image/webp"), "what?"))).status_code == 200
    message = engine.requests[-1].messages[-1]
    (image,) = message.images
    assert message.content == "what?" and message.parts == [image, "what?"]
    assert (image.media_type, image.width, image.height) == ("image/png", 32, 16) and len(image.digest) == 64
    anthropic = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(RED).decode()},
    }
    body = {"model": "eyes", "max_tokens": 2, "messages": [{"role": "user", "content": [anthropic]}]}
    assert (await client.post("/v1/messages", json=body)).status_code == 200
    assert request_images(engine.requests[-1])[0].data == RED
    item = {
        "role": "user",
        "content": [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": data_url(RED)}],
    }
    reply = await client.post(
        "/v1/responses", json={"model": "eyes", "input": [item], "max_output_tokens": 2}
    )
    assert reply.status_code == 200 and engine.requests[-1].messages[-1].parts[0] == "a"
    # The next turn carries the stored image along, decoded once.
    follow = {
        "model": "eyes",
        "input": "and now?",
        "previous_response_id": reply.json()["id"],
        "max_output_tokens": 2,
    }
    assert (await client.post("/v1/responses", json=follow)).status_code == 200
    assert [i.data for i in request_images(engine.requests[-1])] == [RED]


async def test_choices_share_one_decoded_image(client, engine):
    assert (await chat(client, user_with_image(data_url(RED)), n=2, max_tokens=2)).status_code == 200
    first, second = (request_images(r)[0] for r in engine.requests[-2:])
    assert first is second and first.resolved


async def test_request_limits_name_the_image_over_them(client):
    four = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(RED)}}] * 4}]
    error = (await chat(client, four)).json()["error"]
    assert (error["code"], error["param"]) == ("too_many_images", "messages[0].content[3].image_url")
    big = image_bytes((1, 1, 1), (128, 128))  # 4 x 64x64: over the 3 x 64x64 pixels allowed in all
    error = (await chat(client, user_with_image(data_url(big)))).json()["error"]
    assert (error["code"], error["param"]) == ("image_too_large", "messages[0].content[0].image_url")
    error = (
        await client.post(
            "/v1/chat/completions", json={"model": "text", "messages": user_with_image(data_url(RED))}
        )
    ).json()["error"]
    assert error["code"] == "image_input_unsupported" and "its input: text" in error["message"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/cat.png", "http://localhost:9/cat.png", "http://[::1]:9/x.png"]
)
async def test_fetching_urls_never_reaches_this_machine(client, url):
    response = await chat(client, user_with_image(url))
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "image_fetch_failed"
    assert "not a public address" in error["message"] and error["param"] == "messages[0].content[0].image_url"


async def test_ollamas_bare_base64_images_reach_the_engine_and_bad_ones_are_ollama_shaped(client, engine):
    jpeg = image_bytes((200, 10, 10), (24, 24), fmt="JPEG")
    message = {"role": "user", "content": "what?", "images": [base64.b64encode(jpeg).decode()]}
    body = {"model": "eyes", "messages": [message], "stream": False, "options": {"num_predict": 2}}
    assert (await client.post("/api/chat", json=body)).status_code == 200
    sent = engine.requests[-1].messages[-1]
    (image,) = sent.images
    assert sent.parts == [image, "what?"] and image.data == jpeg and image.media_type == "image/jpeg"
    red = base64.b64encode(RED).decode()
    generate = {"model": "eyes", "prompt": "and?", "images": [red], "stream": False}
    assert (await client.post("/api/generate", json=generate)).status_code == 200
    assert request_images(engine.requests[-1])[0].data == RED
    tags = (await client.post("/api/show", json={"model": "eyes"})).json()["capabilities"]
    assert "vision" in tags
    assert "vision" not in (await client.post("/api/show", json={"model": "text"})).json()["capabilities"]
    for path, bad, field in [
        ("/api/chat", {**body, "messages": [{**message, "images": ["no base64!"]}]}, "messages[0].images[0]"),
        ("/api/chat", {**body, "messages": [{**message, "role": "assistant"}]}, "messages[0].images"),
        ("/api/generate", {**generate, "images": [base64.b64encode(b"GIF89a").decode()]}, "images[0]"),
        ("/api/generate", {**generate, "raw": True}, "images"),
        ("/api/chat", {**body, "model": "text"}, "does not accept images"),
    ]:
        response = await client.post(path, json=bad)
        assert response.status_code == 400 and set(response.json()) == {"error"}, (path, bad)
        assert field in response.json()["error"], response.json()
