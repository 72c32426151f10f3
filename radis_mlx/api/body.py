"""Request bodies decoded strictly into schemas (errors carry msgspec's path), and the ids we hand out."""

from __future__ import annotations

import re
import uuid
from typing import TypeVar

import msgspec

from radis_mlx.api.metrics import note_model
from radis_mlx.errors import InvalidRequestError

T = TypeVar("T")
_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`")


def decode_body(body: bytes, model: type[T]) -> T:
    """Decode a JSON body strictly; errors carry msgspec's path as the OpenAI `param`."""
    try:
        decoded = msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        match, missing = _PATH.search(str(exc)), _MISSING.match(str(exc))
        param = match.group(1) if match else None
        if missing:  # name the missing field itself: `model`, `messages[0].role`
            param = f"{param}.{missing.group(1)}" if param else missing.group(1)
        raise InvalidRequestError(str(exc), param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"We could not parse the JSON body of your request: {exc}") from None
    except RecursionError:  # msgspec's limit on nesting (~1000 levels), e.g. inside a JSON schema
        raise InvalidRequestError("The JSON body of your request is nested too deeply.") from None
    except (msgspec.MsgspecError, ValueError, TypeError) as exc:  # any other failure is the body's
        raise InvalidRequestError(f"We could not decode the JSON body of your request: {exc}") from None
    note_model(getattr(decoded, "model", None))  # the request log names it
    return decoded


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
