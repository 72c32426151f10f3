"""ResponseStore: the bounded LRU behind previous_response_id."""

from __future__ import annotations

from radis_mlx.api.openai.response_store import ResponseStore
from radis_mlx.generation.types import ChatMessage, ImageInput, message_with_parts
from radis_mlx.schemas.response import Response


def response(response_id: str) -> Response:
    return Response(id=response_id, created_at=0, model="m", output=[])


def test_least_recently_used_is_dropped_past_the_limit():
    store = ResponseStore(limit=2)
    store.keep(response("a"), [ChatMessage("user", "1")])
    store.keep(response("b"), [])
    assert store.get("a") is not None  # a is now more recent than b
    store.keep(response("c"), [])
    assert store.get("b") is None
    assert [m.content for m in store.get("a").history] == ["1"]
    assert store.get("c").response.id == "c"


def test_pop_removes():
    store = ResponseStore()
    store.keep(response("a"), [])
    assert store.pop("a") is not None
    assert store.get("a") is None and store.pop("a") is None


def test_conversations_with_images_are_also_bounded_by_their_bytes():
    store = ResponseStore(max_bytes=250_000)
    picture = ImageInput("data:", "input[0]", data=b"x" * 100_000, digest="d")
    seen = [message_with_parts("user", [picture, "look"])]
    store.keep(response("a"), seen)
    store.keep(response("b"), seen)
    assert store.get("a") is not None and store.get("b") is not None
    store.keep(response("c"), seen)  # ~300 KB held: the least recently used goes
    assert store.get("a") is None and store.get("c").history[0].images == [picture]
    store.pop("b")
    store.keep(response("d"), seen)
    assert store.get("c") is not None and store.get("d") is not None


def test_the_store_is_bounded_by_bytes_too():
    """1 000 responses of ~1 MB each would be a GB; the byte budget keeps the newest that fit."""
    store = ResponseStore(limit=1000, max_bytes=10 * 2**20)
    big = "x" * 2**20
    for index in range(1000):
        store.keep(response(f"r{index}"), [ChatMessage("user", big)])
        assert store.bytes <= store.max_bytes
    kept = [f"r{index}" for index in range(1000) if store.get(f"r{index}") is not None]
    assert kept == [f"r{index}" for index in range(991, 1000)]
    store.pop("r999")
    assert store.bytes == sum(s.size for s in store._items.values())


def test_a_response_bigger_than_the_whole_budget_is_not_kept():
    store = ResponseStore(max_bytes=1000)
    store.keep(response("small"), [ChatMessage("user", "hi")])
    store.keep(response("huge"), [ChatMessage("user", "x" * 5000)])
    assert store.get("huge") is None and store.get("small") is not None
