"""A request's images made ready before its model is leased: counted, checked against the model, fetched
(when the server allows URLs) and decoded off the event loop. Every failure is a 400 naming the field.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from radis_mlx.api.image_fetch import fetch_image
from radis_mlx.config import ServerSettings
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import GenerationRequest, ImageInput, request_images
from radis_mlx.schemas.images import ImageTooLarge, data_url_bytes, decode_into, invalid_image

if TYPE_CHECKING:
    from radis_mlx.pool import ModelPool


async def resolve_images(pool: ModelPool, model: str, generation: GenerationRequest) -> None:
    """Fill in every image of `generation` (choices share its messages), or raise the 400 for the first
    one that cannot be: too many, a model that reads no images, a URL not fetched, a bad or large image."""
    images = request_images(generation)
    if not images:
        return
    settings = pool.config.server
    if len(images) > settings.max_images:
        raise InvalidRequestError(
            f"{len(images)} images in one request; this server takes at most {settings.max_images} "
            "([server] max_images)",
            param=images[settings.max_images].param,
            code="too_many_images",
        )
    slot = pool.get(model)
    modalities = pool.catalog.input_modalities(slot)
    if "image" not in modalities:
        raise InvalidRequestError(
            f"model '{slot.model_id}' does not accept images (its input: {', '.join(modalities)})",
            param=images[0].param,
            code="image_input_unsupported",
        )
    room = settings.max_image_pixels
    for image in images:
        if not image.resolved:  # a stored conversation's images are resolved already
            declared, data = await _image_bytes(image, settings)
            await asyncio.to_thread(
                decode_into, image, data, declared, pixel_room=room, strict_type=image.strict_type
            )
        room -= image.width * image.height
        if room < 0:
            raise ImageTooLarge(
                f"the request's images have more than {settings.max_image_pixels} pixels in all "
                "([server] max_image_pixels)",
                param=image.param,
            )


async def _image_bytes(image: ImageInput, settings: ServerSettings) -> tuple[str | None, bytes]:
    """The image's declared media type (None for a fetched one: its bytes decide) and its bytes."""
    source = image.source
    if source[:5].lower() == "data:":
        return await asyncio.to_thread(data_url_bytes, source, image.param)
    if source[:7].lower() != "http://" and source[:8].lower() != "https://":
        raise invalid_image("an image must be a data: URL or an http(s) URL", image.param)
    if not settings.fetch_image_urls:
        raise InvalidRequestError(
            "this server does not fetch image URLs: send the image as a base64 data: URL "
            "(or set [server] fetch_image_urls = true)",
            param=image.param,
            code="image_url_not_fetched",
        )
    media_type, data = await fetch_image(source, image.param)
    return (media_type if image.strict_type else None), data
