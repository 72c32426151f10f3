"""Small images for the vision tests, made with Pillow, and the shapes each API sends them in."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, ImageDraw


def image_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> bytes:
    """A solid image (with a stripe, so resizing keeps it distinct) in a Pillow format."""
    picture = Image.new("RGB", size, color)
    ImageDraw.Draw(picture).rectangle([0, 0, size[0] // 4, size[1]], fill=(255 - color[0], 128, color[2]))
    out = io.BytesIO()
    if fmt == "GIF":
        frames = [picture, Image.new("RGB", size, (0, 0, 0))]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    else:
        picture.save(out, format=fmt)
    return out.getvalue()


RED = image_bytes((220, 20, 20))
BLUE = image_bytes((10, 10, 200), (40, 90))


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def chat_image(url: str) -> dict[str, Any]:
    """An OpenAI chat content part."""
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


def user_with_image(url: str, text: str = "What is in this image?") -> list[dict[str, Any]]:
    """OpenAI chat messages: one user turn with an image, then its question."""
    return [{"role": "user", "content": [chat_image(url), {"type": "text", "text": text}]}]


def anthropic_image(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    """An Anthropic image block with a base64 source."""
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()},
    }
