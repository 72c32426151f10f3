"""POST /tokenize and /detokenize (also under /v1/): llama-server's fields and vLLM's, in one shape.

llama-server sends `content` (special tokens added only with `add_special`, default false) and gets
`tokens` (with `with_pieces`: {id, piece} objects, a piece that is not whole UTF-8 as its bytes);
vLLM sends `prompt` (`add_special_tokens`, default true) and gets `tokens`, `count`, `max_model_len`
and, with `return_token_strs`, `token_strs`. Both get all of it.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, Struct, UnsetType

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import Tokenized


class TokenizeRequest(Struct, kw_only=True):
    model: str
    content: str | None = None  # llama-server
    prompt: str | None = None  # vLLM
    add_special: bool | None = None
    add_special_tokens: bool | None = None
    with_pieces: bool = False
    return_token_strs: bool = False
    # vLLM's chat form: not served (refused rather than ignored).
    messages: list[Any] | None = None

    def to_text(self) -> tuple[str, bool]:
        """The text and whether to add the model's special tokens (each API's own default)."""
        if self.messages is not None:
            raise InvalidRequestError(
                "tokenizing chat messages is not supported; send `prompt`", param="messages"
            )
        if (self.content is None) == (self.prompt is None):
            raise InvalidRequestError("send exactly one of `content` and `prompt`", param="content")
        text = self.content if self.content is not None else self.prompt
        add = next((x for x in (self.add_special, self.add_special_tokens) if x is not None), None)
        return text or "", add if add is not None else self.prompt is not None

    def to_response(self, result: Tokenized, max_model_len: int) -> TokenizeResponse:
        pieces = result.pieces or []
        tokens: list[int | TokenPiece] = (
            [TokenPiece(i, _piece(p)) for i, p in zip(result.ids, pieces, strict=True)]
            if self.with_pieces
            else list(result.ids)
        )
        strings = [p.decode(errors="replace") for p in pieces] if self.return_token_strs else UNSET
        return TokenizeResponse(tokens, len(result.ids), max_model_len, strings)


def _piece(raw: bytes) -> str | list[int]:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return list(raw)


class TokenPiece(Struct):
    id: int
    piece: str | list[int]


class TokenizeResponse(Struct, omit_defaults=True):
    tokens: list[int | TokenPiece]  # ids, or with_pieces: {id, piece} objects
    count: int
    max_model_len: int
    token_strs: list[str] | UnsetType = UNSET


class DetokenizeRequest(Struct, kw_only=True):
    model: str
    tokens: list[int]


class DetokenizeResponse(Struct):
    content: str  # llama-server
    prompt: str  # vLLM
