"""Images as requests send them: data URLs, decoding and normalizing with Pillow, prompt-cache keys, and the
URL fetcher's guard (an httpx mock transport and a stub resolver stand in for the network)."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from radis_mlx.api.image_fetch import fetch_image, is_public
from radis_mlx.engines.mlx.vision_cache import image_cache_key
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import ImageInput
from radis_mlx.schemas.images import data_url_bytes, decode_into
from tests.support.images import RED, data_url, image_bytes

PARAM = "messages[0].content[0].image_url"


def decoded(
    data: bytes, declared: str | None = None, *, room: int = 10**8, strict: bool = False
) -> ImageInput:
    image = ImageInput("data:...", PARAM)
    decode_into(image, data, declared, pixel_room=room, strict_type=strict)
    return image


def test_a_data_url_gives_its_media_type_and_bytes():
    assert data_url_bytes(data_url(RED), PARAM) == ("image/png", RED)
    assert data_url_bytes(data_url(RED, "IMAGE/JPG"), PARAM)[0] == "image/jpg"


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png,plain",
        "data:text/plain;base64,aGk=",
        "data:image/png;base64,@@@",
        "data:image/png;base64,",
    ],
)
def test_bad_data_urls_are_400_naming_the_field(url):
    with pytest.raises(InvalidRequestError) as error:
        data_url_bytes(url, PARAM)
    assert error.value.param == PARAM and error.value.code == "invalid_image"


def test_png_and_jpeg_reach_engines_as_sent_with_a_hash_of_their_bytes():
    png = decoded(RED)
    assert (png.data, png.media_type, png.width, png.height) == (RED, "image/png", 64, 64)
    jpeg = image_bytes((1, 2, 3), fmt="JPEG")
    assert decoded(jpeg).data == jpeg and decoded(jpeg).media_type == "image/jpeg"
    assert decoded(RED).digest == png.digest != decoded(jpeg).digest


@pytest.mark.parametrize("fmt", ["WEBP", "GIF"])
def test_webp_and_gif_become_png_of_the_same_first_frame(fmt):
    original = Image.open(io.BytesIO(RED)).convert("RGB")
    image = decoded(_webp() if fmt == "WEBP" else image_bytes((220, 20, 20), fmt="GIF"))
    assert image.media_type == "image/png"
    again = Image.open(io.BytesIO(image.data)).convert("RGB")
    assert again.tobytes() == original.tobytes()  # lossless WebP; the GIF's first frame, not its second


def _webp() -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(RED)).save(out, format="WEBP", lossless=True)
    return out.getvalue()


def test_an_exif_rotated_jpeg_is_turned_upright():
    picture = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    out = io.BytesIO()
    picture.save(out, format="JPEG", exif=exif)
    image = decoded(out.getvalue())
    assert (image.media_type, image.width, image.height) == ("image/png", 20, 40)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not an image at all", "cannot be read"),
        (RED[: len(RED) // 2], "cannot be decoded"),
        (b"BM" + b"\x00" * 60, "cannot be read"),  # a BMP header: not a format we read
    ],
)
def test_undecodable_images_are_400(data, why):
    with pytest.raises(InvalidRequestError, match=why) as error:
        decoded(data)
    assert error.value.param == PARAM


def test_an_image_over_the_pixel_room_is_400_before_it_is_decoded():
    with pytest.raises(InvalidRequestError, match="64x64 pixels") as error:
        decoded(RED, room=64 * 64 - 1)
    assert error.value.code == "image_too_large"
    assert decoded(RED, room=64 * 64).width == 64


def test_a_declared_type_must_match_the_bytes_only_where_the_api_says_so():
    jpeg = image_bytes((5, 5, 5), fmt="JPEG")
    assert decoded(jpeg, "image/png").media_type == "image/jpeg"
    with pytest.raises(InvalidRequestError, match="not the image/png"):
        decoded(jpeg, "image/png", strict=True)


def test_cache_keys_name_each_image_by_its_hash():
    placeholder, a, b = 7, "a" * 64, "b" * 64
    tokens = [1, 2, 7, 7, 7, 3, 7, 7, 4]
    key_ab = image_cache_key(tokens, placeholder, [a, b])
    assert key_ab[:2] == [1, 2] and key_ab[5] == 3 and key_ab[8] == 4
    assert len(set(key_ab[2:5])) == 1 and key_ab[2] < 0 and key_ab[6] < 0 and key_ab[2] != key_ab[6]
    key_ac = image_cache_key(tokens, placeholder, [a, "c" * 64])
    assert key_ac[:6] == key_ab[:6] and key_ac[6] != key_ab[6]  # the same first image keeps its prefix
    assert image_cache_key(tokens, placeholder, [a, b]) == key_ab
    # Runs that cannot be told apart per image (tiles): every run names all the images.
    tiled = image_cache_key(tokens, placeholder, [a])
    assert tiled[2] == tiled[6] < 0 and tiled != image_cache_key(tokens, placeholder, [b])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1::1", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared (CGNAT)
        ("0.0.0.0", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_only_public_addresses_may_be_fetched(address, public):
    assert is_public(address) is public


def _resolver(table: dict[str, str]):
    async def resolve(host: str, port: int) -> list[str]:
        return [table[host]]

    return resolve


PUBLIC = {"images.example": "93.184.216.34", "internal.example": "10.0.0.5"}


async def _fetch(handler, url="https://images.example/cat.png", **kwargs):
    return await fetch_image(
        url, PARAM, transport=httpx.MockTransport(handler), resolve=_resolver(PUBLIC), **kwargs
    )


@pytest.mark.anyio
async def test_a_public_image_is_fetched_from_the_checked_address_with_its_host_name():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "image/png"}, content=RED)

    assert await _fetch(handler) == ("image/png", RED)
    (request,) = seen
    assert request.url.host == "93.184.216.34" and request.headers["host"] == "images.example"
    assert request.extensions["sni_hostname"] == "images.example"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "why"),
    [
        (httpx.Response(302, headers={"location": "http://internal.example/x.png"}), "not a public address"),
        (httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html>"), "not an image"),
        (httpx.Response(404), "HTTP 404"),
        (httpx.Response(200, headers={"content-type": "image/png"}, content=b"x" * 101), "over 100 bytes"),
    ],
)
async def test_what_the_fetcher_refuses(response, why):
    with pytest.raises(InvalidRequestError, match=why) as error:
        await _fetch(lambda request: response, max_bytes=100)
    assert error.value.param == PARAM and error.value.code == "image_fetch_failed"


@pytest.mark.anyio
async def test_loopback_urls_and_endless_redirects_are_refused():
    def loop(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"location": "https://images.example/again.png"})

    with pytest.raises(InvalidRequestError, match="redirects more than"):
        await _fetch(loop)
    with pytest.raises(InvalidRequestError, match="not a public address"):
        await fetch_image("http://127.0.0.1:1/x.png", PARAM, transport=httpx.MockTransport(loop))


def test_image_input_data_url_round_trips():
    image = decoded(RED)
    assert image.data_url() == "data:image/png;base64," + base64.b64encode(RED).decode()
