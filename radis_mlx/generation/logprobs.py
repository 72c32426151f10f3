"""Per-token logprobs kept in step with the text a generation actually emits.

Text can lag its tokens (a stop string's possible start is held back, an incomplete UTF-8
character waits for its next byte), so each token's logprob is released once all of its bytes
have been emitted; tokens a stop string cut off are never reported.
"""

from __future__ import annotations

from collections.abc import Callable

from radis_mlx.generation.types import TokenLogprob


class LogprobQueue:
    """Add token logprobs as tokens are sampled; take() those whose text has been emitted."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, int, TokenLogprob]] = []  # (start, end) byte offsets
        self._produced = 0
        self._emitted = 0

    def add(self, entry: TokenLogprob) -> None:
        start, self._produced = self._produced, self._produced + len(entry.bytes)
        self._pending.append((start, self._produced, entry))

    def take(self, text: str) -> list[TokenLogprob]:
        """The tokens fully covered once `text` is emitted."""
        self._emitted += len(text.encode())
        return self._release(lambda start, end: end <= self._emitted)

    def finish(self, text: str, stopped: bool) -> list[TokenLogprob]:
        """The rest at the end: all of it, or after a stop string only tokens that began before the cut."""
        self._emitted += len(text.encode())
        if not stopped:
            return self._release(lambda start, end: True)
        out = self._release(lambda start, end: start < self._emitted)
        self._pending.clear()
        return out

    def _release(self, ready: Callable[[int, int], bool]) -> list[TokenLogprob]:
        out: list[TokenLogprob] = []
        while self._pending and ready(*self._pending[0][:2]):
            out.append(self._pending.pop(0)[2])
        return out
