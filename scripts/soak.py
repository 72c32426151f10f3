"""Soak test: N clients hammer a radis-mlx server on loopback for T seconds, then a report.

Each client loops over a mix of chat (plain and streamed), streams it abandons after two chunks
(a client disconnect), text completions and embeddings, on the models given. Reported: requests,
errors, p50/p99 latency, and the server's RSS (with its llama.cpp children) after the first
request to each model ("cold"), after --warmup seconds of full load (the baseline) and at the
end, each after --settle idle seconds. Exit status 1 when there were errors or RSS grew more than
--max-rss-growth.

    python scripts/soak.py --url http://127.0.0.1:1234/v1 --pid SERVER_PID \\
        --chat-model smollm2-135m-instruct --embed-model all-minilm-l6-v2 --clients 16 --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def record(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children, in KiB (ps works on Linux and macOS)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for each in [str(pid), *children]:
        out = subprocess.run(["ps", "-o", "rss=", "-p", each], capture_output=True, text=True).stdout.strip()
        total += int(out) if out.isdigit() else 0
    return total


async def chat(client: httpx.AsyncClient, model: str, stream: bool, abandon: bool) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": random.choice(["Hi!", "Name a color.", "What is 2+2?"])}],
        "max_tokens": random.randint(4, 12),
        "stream": stream,
    }
    if not stream:
        response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")
        return
    async with client.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        events = 0
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return
            if "error" in json.loads(line[6:]):
                raise RuntimeError(f"error event: {line}")
            events += 1
            if abandon and events == 2:
                return  # closing the stream here is the client disconnect under test
        raise RuntimeError("stream ended without [DONE]")


async def complete(client: httpx.AsyncClient, model: str) -> None:
    body = {"model": model, "prompt": "Once upon a time", "max_tokens": random.randint(4, 12)}
    response = await client.post("/completions", json=body)
    response.raise_for_status()
    assert response.json()["choices"][0]["text"] is not None


async def embed(client: httpx.AsyncClient, model: str) -> None:
    inputs = [f"sentence number {random.randint(0, 10**6)}" for _ in range(random.randint(1, 8))]
    response = await client.post("/embeddings", json={"model": model, "input": inputs})
    response.raise_for_status()
    assert len(response.json()["data"]) == len(inputs)


async def client_loop(args: argparse.Namespace, deadline: float, tally: Tally) -> None:
    kinds = ["chat", "stream", "disconnect", "completion"] + (["embedding"] if args.embed_model else [])
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with httpx.AsyncClient(base_url=args.url, timeout=args.request_timeout, headers=headers) as client:
        while time.monotonic() < deadline:
            kind = random.choice(kinds)
            model = random.choice(args.chat_model)
            started = time.monotonic()
            try:
                if kind == "embedding":
                    await embed(client, args.embed_model)
                elif kind == "completion":
                    await complete(client, model)
                else:
                    await chat(client, model, stream=kind != "chat", abandon=kind == "disconnect")
            except Exception as exc:
                tally.errors.append(f"{kind} on {model}: {type(exc).__name__}: {exc}")
                continue
            tally.record(kind, time.monotonic() - started)


async def soak(args: argparse.Namespace) -> dict[str, object]:
    tally = Tally()
    # Warm-up: every model loaded once (the "cold" baseline), then --warmup seconds of the full
    # load, so per-slot buffers and allocator pools exist before the steady-state baseline.
    await client_loop_once(args)
    rss_cold = await idle_rss_kib(args)
    warm_until = time.monotonic() + args.warmup
    await asyncio.gather(*(client_loop(args, warm_until, Tally()) for _ in range(args.clients)))
    rss_start, cache_start = await idle_rss_kib(args), await prompt_cache_kib(args)
    deadline = time.monotonic() + args.duration
    await asyncio.gather(*(client_loop(args, deadline, tally) for _ in range(args.clients)))
    rss_end, cache_end = await idle_rss_kib(args), await prompt_cache_kib(args)
    # The prompt caches fill up to their configured bound by design; growth beyond that is a leak.
    net_growth = (rss_end - rss_start - (cache_end - cache_start)) / rss_start if rss_start else None
    every = sorted(t for times in tally.latencies.values() for t in times)
    return {
        "clients": args.clients,
        "duration_s": args.duration,
        "requests": len(every),
        "errors": len(tally.errors),
        "first_errors": tally.errors[:5],
        "by_kind": {kind: len(times) for kind, times in sorted(tally.latencies.items())},
        "p50_s": round(statistics.median(every), 3) if every else None,
        "p99_s": round(every[min(len(every) - 1, int(len(every) * 0.99))], 3) if every else None,
        "warmup_s": args.warmup,
        "rss_cold_mib": round(rss_cold / 1024, 1),
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "rss_growth": round(rss_end / rss_start - 1, 4) if rss_start else None,
        "rss_growth_from_cold": round(rss_end / rss_cold - 1, 4) if rss_cold else None,
        "prompt_cache_start_mib": round(cache_start / 1024, 1),
        "prompt_cache_end_mib": round(cache_end / 1024, 1),
        "rss_growth_net_of_prompt_cache": round(net_growth, 4) if net_growth is not None else None,
    }


async def idle_rss_kib(args: argparse.Namespace) -> int:
    """RSS once the server has been idle --settle seconds: its model workers have then handed back
    the memory they keep for reuse after a burst, so what remains is what the server holds."""
    await asyncio.sleep(args.settle)
    return rss_kib(args.pid)


async def prompt_cache_kib(args: argparse.Namespace) -> int:
    """The bytes the loaded models' prompt caches hold (GET /api/v0/models/loaded), in KiB."""
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    base = args.url.removesuffix("/").removesuffix("/v1")
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        loaded = (await client.get(f"{base}/api/v0/models/loaded")).json()["data"]
    return sum(model["stats"].get("prompt_cache_bytes", 0) for model in loaded) // 1024


async def client_loop_once(args: argparse.Namespace) -> None:
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with httpx.AsyncClient(base_url=args.url, timeout=args.request_timeout, headers=headers) as client:
        for model in args.chat_model:
            await chat(client, model, stream=False, abandon=False)
        if args.embed_model:
            await embed(client, args.embed_model)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="the server's /v1 base URL (loopback)")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id (for RSS)")
    parser.add_argument("--chat-model", action="append", required=True, help="repeat to mix several")
    parser.add_argument("--embed-model")
    parser.add_argument("--api-key")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=600, help="seconds")
    parser.add_argument("--warmup", type=float, default=60, help="seconds of full load before the baseline")
    parser.add_argument("--request-timeout", type=float, default=600)
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before each RSS reading")
    args = parser.parse_args()
    host = httpx.URL(args.url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("soak only targets a server on this machine's loopback")
    report = asyncio.run(soak(args))
    print(json.dumps(report, indent=2))
    growth = report["rss_growth_net_of_prompt_cache"]
    ok = report["errors"] == 0 and isinstance(growth, float) and growth < args.max_rss_growth
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
