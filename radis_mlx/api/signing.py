"""The reasoning we hand out comes back sealed: Anthropic thinking signatures, Responses encrypted_content.

Clients keep a model's reasoning only as the opaque value we gave them (Claude Code replays thinking blocks
by their signature, Codex reasoning items by their encrypted_content), and they must not be able to pass off
text of their own as the model's. A sealed value carries the reasoning text (compressed) and an HMAC under
a key kept in the cache folder, so it survives restarts (a resumed session still verifies); one that does not
verify is a 400 naming its field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import zlib
from pathlib import Path

_PREFIX = "rmx1."


class ReasoningSeal:
    """Seals reasoning text into an opaque value, and opens only the values it sealed."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def in_folder(cls, folder: Path) -> ReasoningSeal:
        """The seal whose key is `folder`/reasoning.key, created (0600) on first use."""
        path = folder / "reasoning.key"
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            key = secrets.token_bytes(32)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(key)
            temporary.chmod(0o600)
            os.replace(temporary, path)  # two servers starting at once agree on the file that won
            key = path.read_bytes()
        return cls(key)

    def seal(self, text: str) -> str:
        data = zlib.compress(text.encode())
        return _PREFIX + _b64(data) + "." + _b64(self._mac(data))

    def open(self, sealed: str) -> str | None:
        """The text a value of ours holds; None for anything we did not seal."""
        if not sealed.startswith(_PREFIX) or sealed.count(".") != 2:
            return None
        body, mac = sealed[len(_PREFIX) :].split(".")
        try:
            data, tag = _unb64(body), _unb64(mac)
            if not hmac.compare_digest(tag, self._mac(data)):
                return None
            return zlib.decompress(data).decode()
        except (ValueError, zlib.error, UnicodeDecodeError):
            return None

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
