"""Benchmark radis-mlx's llama.cpp proxy against the llama.cpp child it supervises, in one run.

Starts `radis-mlx serve` with one GGUF model on the llama.cpp engine, finds the child it started,
and streams the same greedy chat requests through radis-mlx (/v1/chat/completions) and straight to
the child (its own /v1/chat/completions), alternating, so both see the same machine state:

  single-stream decode tok/s   (completion_tokens - 1) / (last token - first token)
  TTFT                         request sent → first content token
  N-stream aggregate tok/s     N concurrent streams: all completion tokens / wall time

Usage: .venv/bin/python scripts/bench.py [--model SOURCE] [--rounds 5] [--tokens 128] [--streams 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server import STARTER_SOURCE, RunningServer

PROMPT = "Count from 1 to 1000, one number per line."


class Stream(msgspec.Struct):
    ttft: float
    decode_tps: float
    tokens: int


async def stream(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> Stream:
    """One streamed chat completion; its TTFT, decode rate and token count."""
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = msgspec.json.decode(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
    return Stream(first - started, (tokens - 1) / (last - first) if last > first else 0.0, tokens)


async def aggregate(client: httpx.AsyncClient, url: str, body: dict[str, object], streams: int) -> float:
    """Completion tokens per second over `streams` concurrent streams."""
    started = time.perf_counter()
    results = await asyncio.gather(*(stream(client, url, body) for _ in range(streams)))
    return sum(r.tokens for r in results) / (time.perf_counter() - started)


def child_port(server_pid: int) -> int:
    """The port of the llama.cpp worker radis-mlx started (from its command line in /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if ppid == server_pid and "radis_mlx.engines.llamacpp_worker" in argv:
            return int(argv[argv.index("--port") + 1])
    raise RuntimeError("no llama.cpp child found under the server")


async def run(args: argparse.Namespace, server: RunningServer) -> None:
    body: dict[str, object] = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        ours = f"{server.url}/chat/completions"
        await stream(client, ours, {**body, "model": "bench"})  # loads the model
        child = f"http://127.0.0.1:{child_port(server.process.pid)}/v1/chat/completions"
        # radis-mlx sends cache_prompt = false (its default, for reproducible greedy output); so do we here.
        direct = {**body, "cache_prompt": False}
        targets = {"radis-mlx": (ours, {**body, "model": "bench"}), "llama.cpp": (child, direct)}
        for url, payload in targets.values():  # warm both paths
            await stream(client, url, payload)
        singles: dict[str, list[Stream]] = {name: [] for name in targets}
        multi: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, payload) in targets.items():
                singles[name].append(await stream(client, url, payload))
            for name, (url, payload) in targets.items():
                multi[name].append(await aggregate(client, url, payload, args.streams))
    med = statistics.median
    rows = {
        name: (
            med(s.decode_tps for s in singles[name]),
            med(s.ttft for s in singles[name]) * 1000,
            med(multi[name]),
        )
        for name in targets
    }
    ours_row, child_row = rows["radis-mlx"], rows["llama.cpp"]
    ratios = (ours_row[0] / child_row[0], child_row[1] / ours_row[1], ours_row[2] / child_row[2])
    print(f"model {args.model}, {args.tokens} tokens, {args.rounds} rounds (medians), {args.streams} streams")
    print(f"{'':12}{'decode tok/s':>14}{'TTFT ms':>10}{f'{args.streams}-stream tok/s':>18}")
    for name, (tps, ttft, agg) in rows.items():
        print(f"{name:12}{tps:14.1f}{ttft:10.1f}{agg:18.1f}")
    print(
        f"{'ratio':12}{ratios[0]:14.3f}{ratios[1]:10.3f}{ratios[2]:18.3f}  (ours / child; TTFT: child / ours)"
    )


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=STARTER_SOURCE, help="a GGUF source, as in models.toml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: its default)")
    args = parser.parse_args()
    threads = f"threads = {args.threads}\n" if args.threads else ""
    config = (
        f"[engines.llamacpp]\nparallel = {args.streams}\n{threads}\n"
        f'[models.bench]\nsource = "{args.model}"\nengine = "llamacpp"\ncontext_length = 4096\n'
    )
    with tempfile.TemporaryDirectory() as workdir:
        server = RunningServer(config, Path(workdir), extra_args=("--log-level", "warning")).wait_ready()
        try:
            asyncio.run(run(args, server))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
