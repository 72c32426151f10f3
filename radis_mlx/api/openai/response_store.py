"""Responses kept in memory, so `previous_response_id` can continue a conversation: a bounded LRU.

Bounded by count and by the bytes of the images their conversations carry (a conversation's images are
counted with each response that holds them: an upper bound)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from radis_mlx.generation.types import ChatMessage
from radis_mlx.schemas.response import Response


@dataclasses.dataclass
class Stored:
    response: Response
    # The whole conversation up to and including this response's output (instructions excluded).
    history: list[ChatMessage]
    image_bytes: int = 0


class ResponseStore:
    """The last `limit` stored responses, least recently used dropped first."""

    def __init__(self, limit: int = 1000, image_bytes: int = 256 * 2**20) -> None:
        self.limit = limit
        self.image_bytes = image_bytes
        self._items: OrderedDict[str, Stored] = OrderedDict()
        self._held = 0  # image bytes of the stored conversations

    def keep(self, response: Response, history: list[ChatMessage]) -> None:
        self.pop(response.id)
        stored = Stored(response, history, sum(len(i.data) for m in history for i in m.images))
        self._items[response.id] = stored
        self._held += stored.image_bytes
        while len(self._items) > self.limit or (self._held > self.image_bytes and len(self._items) > 1):
            self._held -= self._items.popitem(last=False)[1].image_bytes

    def get(self, response_id: str) -> Stored | None:
        stored = self._items.get(response_id)
        if stored is not None:
            self._items.move_to_end(response_id)
        return stored

    def pop(self, response_id: str) -> Stored | None:
        stored = self._items.pop(response_id, None)
        self._held -= stored.image_bytes if stored is not None else 0
        return stored
