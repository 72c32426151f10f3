"""Responses kept in memory, so `previous_response_id` can continue a conversation: a bounded LRU.

Bounded by count and by bytes (each response with its whole conversation so far, images included: a
conversation's images count with each response that holds them, an upper bound), least recently used
dropped first; a response bigger than the whole byte budget is not kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict

import msgspec

from radis_mlx.generation.types import ChatMessage
from radis_mlx.schemas.response import Response

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Stored:
    response: Response
    # The whole conversation up to and including this response's output (instructions excluded).
    history: list[ChatMessage]
    size: int = 0  # bytes, roughly: the response as JSON and the conversation's text and images


def stored_size(response: Response, history: list[ChatMessage]) -> int:
    """What keeping a response costs, near enough: its JSON plus every message's text, calls and images."""
    text = sum(len(m.content or "") + len(m.tool_call_id or "") for m in history)
    text += sum(len(image.data) for m in history for image in m.images)
    calls = sum(len(c.id) + len(c.name) + len(c.arguments) for m in history for c in m.tool_calls or [])
    return len(msgspec.json.encode(response)) + text + calls + 64 * len(history)


class ResponseStore:
    """The last `limit` stored responses within `max_bytes`, least recently used dropped first."""

    def __init__(self, limit: int = 1000, max_bytes: int = 256 * 2**20) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def keep(self, response: Response, history: list[ChatMessage]) -> None:
        size = stored_size(response, history)
        if size > self.max_bytes:
            log.warning(
                "not storing response %s: %d bytes, over the store's %d", response.id, size, self.max_bytes
            )
            return
        self.pop(response.id)
        self._items[response.id] = Stored(response, history, size)
        self.bytes += size
        while len(self._items) > self.limit or self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.size

    def get(self, response_id: str) -> Stored | None:
        stored = self._items.get(response_id)
        if stored is not None:
            self._items.move_to_end(response_id)
        return stored

    def pop(self, response_id: str) -> Stored | None:
        stored = self._items.pop(response_id, None)
        if stored is not None:
            self.bytes -= stored.size
        return stored
