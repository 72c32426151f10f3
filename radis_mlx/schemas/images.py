"""Images as requests send them: base64 data: URLs and bytes, checked and decoded with Pillow.

Every API family's image part becomes a generation.types.ImageInput naming its source and field; the
HTTP layer (api/images.py) then fetches it if it is a URL and calls `decode_into` here, off the event
loop. What engines get is always a PNG or a JPEG (WebP, GIF's first frame, CMYK JPEGs and EXIF-rotated
images are re-encoded as PNG: llama.cpp's image loader reads neither WebP nor CMYK, nor rotates), its
size, and a hash of its bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import ImageInput

# Media types a request may declare, and the Pillow format each one is.
MEDIA_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
_FORMAT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),", re.IGNORECASE)
_ORIENTATION = 0x0112  # the EXIF tag image viewers rotate by


class ImageTooLarge(InvalidRequestError):
    code = "image_too_large"


def invalid_image(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_image")


def check_media_type(media_type: str, param: str) -> str:
    """The media type in lower case, if it is one we read; 400 otherwise."""
    kind = media_type.strip().lower()
    if kind not in MEDIA_TYPES:
        raise invalid_image(
            f"unsupported image media type '{media_type}': send PNG, JPEG, WebP or GIF", param
        )
    return kind


def data_url_bytes(url: str, param: str) -> tuple[str, bytes]:
    """(declared media type, bytes) of a base64 `data:image/...;base64,` URL; 400 naming param otherwise."""
    match = _DATA_URL.match(url[:256])
    if match is None or ";base64" not in match["params"].lower():
        raise invalid_image("an image data URL must look like data:image/png;base64,...", param)
    kind = check_media_type(match["type"] or "", param)
    try:
        data = base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_image("the image data URL is not valid base64", param) from None
    if not data:
        raise invalid_image("the image is empty", param)
    return kind, data


def decode_into(
    image: ImageInput, data: bytes, declared: str | None, *, pixel_room: int, strict_type: bool
) -> None:
    """Check that `data` is a whole image of a supported format within `pixel_room` pixels, and fill in
    `image` (bytes as engines take them, media type, size, digest). `strict_type`: the declared media type
    must match the bytes (Anthropic's rule); otherwise only the bytes' own format counts."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    param = image.param
    try:
        with Image.open(io.BytesIO(data), formats=list(_FORMAT_TYPES)) as img:
            fmt = str(img.format)
            width, height = img.size
            if width * height > pixel_room:
                raise ImageTooLarge(
                    f"the image has {width}x{height} pixels, over what is left of this request's "
                    f"image pixel budget ({pixel_room}; [server] max_image_pixels)",
                    param=param,
                )
            if strict_type and declared is not None and MEDIA_TYPES.get(declared) != fmt:
                raise invalid_image(
                    f"the image is a {fmt} file, not the {declared} its media type says", param
                )
            img.load()  # a truncated or corrupt image fails here, not in an engine
            rotated = img.getexif().get(_ORIENTATION, 1) not in (0, 1)
            readable = fmt == "PNG" or (fmt == "JPEG" and img.mode in ("L", "RGB"))
            if readable and not rotated:
                encoded, media_type = data, _FORMAT_TYPES[fmt]
            else:
                upright = ImageOps.exif_transpose(img)
                encoded, media_type = _as_png(upright), "image/png"
                width, height = upright.size
    except InvalidRequestError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise invalid_image(f"the image cannot be read as PNG, JPEG, WebP or GIF ({exc})", param) from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for broken files
        raise invalid_image(f"the image cannot be decoded: {exc}", param) from None
    image.data, image.media_type, image.width, image.height = encoded, media_type, width, height
    image.digest = hashlib.sha256(encoded).hexdigest()


def _as_png(img: object) -> bytes:
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
