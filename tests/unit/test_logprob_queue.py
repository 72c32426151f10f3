"""Token logprobs are released in step with emitted text; a stop string's tokens are dropped."""

from __future__ import annotations

from radis_mlx.generation.logprobs import LogprobQueue
from radis_mlx.generation.types import TokenLogprob


def token(raw: bytes) -> TokenLogprob:
    return TokenLogprob(raw.decode(errors="replace"), -1.0, raw)


def test_tokens_wait_for_their_text():
    queue = LogprobQueue()
    queue.add(token(b"He"))
    queue.add(token(b"llo"))
    assert [t.bytes for t in queue.take("Hel")] == [b"He"]
    assert [t.bytes for t in queue.finish("lo", stopped=False)] == [b"llo"]


def test_split_utf8_character_is_released_when_complete():
    queue = LogprobQueue()
    queue.add(token("é".encode()[:1]))
    assert queue.take("") == []
    queue.add(token("é".encode()[1:]))
    assert len(queue.take("é")) == 2


def test_stop_drops_tokens_after_the_cut():
    queue = LogprobQueue()
    for raw in (b"The", b" end", b" STOP", b" more"):
        queue.add(token(raw))
    assert [t.bytes for t in queue.take("The")] == [b"The"]
    # " en" emitted, then the stop cut the rest: " end" began before the cut, " STOP" did not.
    assert [t.bytes for t in queue.finish(" en", stopped=True)] == [b" end"]
