"""Responses kept in memory, so `previous_response_id` can continue a conversation: a bounded LRU."""

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


class ResponseStore:
    """The last `limit` stored responses, least recently used dropped first."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def keep(self, response: Response, history: list[ChatMessage]) -> None:
        self._items[response.id] = Stored(response, history)
        self._items.move_to_end(response.id)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> Stored | None:
        stored = self._items.get(response_id)
        if stored is not None:
            self._items.move_to_end(response_id)
        return stored

    def pop(self, response_id: str) -> Stored | None:
        return self._items.pop(response_id, None)
