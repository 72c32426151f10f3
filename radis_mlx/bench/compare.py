"""Several targets measured alternately, round by round, into one Row of figures each (medians)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
from dataclasses import dataclass, field

import httpx

from radis_mlx.bench.measure import DECODE_PROMPT, Stream, Target, Turns, aggregate, stream, two_turns
from radis_mlx.bench.servers import PeakRss


@dataclass
class Row:
    name: str
    decode: float = 0.0
    ttft: float = 0.0
    streams: dict[int, float] = field(default_factory=dict)
    cold: float = 0.0
    second: float = 0.0
    rss: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    streamed: int = 0  # completion tokens, all requests
    cpu_per_token: float = 0.0  # ms of the server's own process CPU per streamed token (llama.cpp engine)


async def measure(
    targets: list[Target], args: argparse.Namespace, tokens: int, *, chat_turns: bool = True
) -> dict[str, Row]:
    """Every figure for every target, alternating targets within each round; medians over rounds.

    `chat_turns=False` leaves out the two-turn chat (its ~600-token prompt takes minutes on slow targets).
    """
    singles: dict[str, list[Stream]] = {t.name: [] for t in targets}
    multi: dict[str, dict[int, list[float]]] = {t.name: {n: [] for n in args.streams} for t in targets}
    errors = dict.fromkeys(singles, 0)
    turns: dict[str, list[Turns]] = {t.name: [] for t in targets}
    firsts: dict[str, list[float]] = {t.name: [] for t in targets}
    streamed = dict.fromkeys(singles, 0)
    body = {"messages": [{"role": "user", "content": DECODE_PROMPT}], "max_tokens": tokens, "temperature": 0}
    # A fresh connection per request for every target: llama.cpp's server drops the next request on
    # a connection reused after a streamed response ("Server disconnected without sending a response").
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        for target in targets:  # warm each path (and load the model)
            await stream(client, target, {**body, "max_tokens": 2})
        for _ in range(args.rounds):
            for target in targets:
                singles[target.name].append(await stream(client, target, body))
            for _ in range(args.ttft_samples):
                for target in targets:
                    short = await stream(client, target, {**body, "max_tokens": 2})
                    firsts[target.name] += [short.ttft] if short.error is None and short.ttft else []
                    streamed[target.name] += short.tokens
            for n in args.streams:
                for target in targets:
                    rate, failed, total = await aggregate(client, target, tokens, n)
                    multi[target.name][n].append(rate)
                    errors[target.name] += failed if n == max(args.streams) else 0
                    streamed[target.name] += total
            for target in targets if chat_turns else []:
                turns[target.name].append(
                    await two_turns(client, target, args.prefix_words, args.turn_tokens)
                )
    med = statistics.median
    rows = {}
    for name in singles:
        done = [s for s in singles[name] if s.error is None]
        chats = [t for t in turns[name] if t.error is None]
        failures = [s.error for s in singles[name] if s.error] + [t.error for t in turns[name] if t.error]
        if failures:
            print(f"{name}: {len(failures)} failed single requests, e.g. {failures[0]}")
        rows[name] = Row(
            name,
            med(s.decode_tps for s in done) if done else 0.0,
            med(firsts[name] or [s.ttft for s in done]) * 1000 if done or firsts[name] else 0.0,
            {n: med(rates) for n, rates in multi[name].items()},
            med(t.cold_ttft for t in chats) * 1000 if chats else 0.0,
            med(t.second_ttft for t in chats) * 1000 if chats else 0.0,
            errors=errors[name],
            prompt_tokens=chats[0].prompt_tokens if chats else 0,
            streamed=streamed[name] + sum(s.tokens for s in done),
        )
    return rows


def measure_with_rss(
    targets: list[Target], pids: dict[str, int], args: argparse.Namespace, tokens: int, **options: bool
) -> dict[str, Row]:
    """measure(), sampling each target's peak RSS meanwhile (pids: target name → its process tree's root)."""
    memory = PeakRss(pids)
    memory.start()
    try:
        rows = asyncio.run(measure(targets, args, tokens, **options))
    finally:
        peaks = memory.stop()
    for name, peak in peaks.items():
        rows[name].rss = peak
    return rows
