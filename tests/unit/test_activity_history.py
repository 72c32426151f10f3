"""The dashboard's history ring: requests and tokens per interval, bounded, tokens spread over their span."""

from __future__ import annotations

import pytest

from radis_mlx.api.activity import History, per_second


def test_requests_and_failures_land_in_their_interval():
    history = History(interval=5, size=4)
    history.count_request(False, now=101.0)
    history.count_request(True, now=104.9)
    history.count_request(False, now=106.0)
    buckets = history.buckets(now=107.0)
    assert [b.start for b in buckets] == [90, 95, 100, 105]
    assert [(b.requests, b.failed) for b in buckets] == [(0, 0), (0, 0), (2, 1), (1, 0)]


def test_tokens_are_spread_over_the_time_they_took():
    history = History(interval=5, size=4)
    history.add_tokens(30, start=97.5, end=112.5, now=112.5)  # 15 s: 2.5 s, 5 s, 5 s, 2.5 s
    assert [b.tokens for b in history.buckets(now=112.5)] == [5, 10, 10, 5]
    assert history.buckets(now=112.5)[1].tokens_per_second == 2


def test_the_ring_forgets_what_is_older_than_it_holds():
    history = History(interval=5, size=4)
    history.count_request(False, now=100.0)
    history.add_tokens(8, start=60.0, end=100.0, now=100.0)  # the ring holds 85..105: 15 s of the 40
    assert sum(b.tokens for b in history.buckets(now=100.0)) == pytest.approx(8 * 15 / 40)
    history.count_request(False, now=121.0)  # 100's slot is reused a full ring later
    assert [b.requests for b in history.buckets(now=121.0)] == [0, 0, 0, 1]
    history.count_request(False, now=50.0)  # too old to count
    assert sum(b.requests for b in history.buckets(now=121.0)) == 1


def test_a_speed_needs_tokens_and_time():
    assert per_second(10, 2.0) == 5
    assert per_second(0, 2.0) is None and per_second(5, 0.0) is None
