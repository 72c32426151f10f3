"""Benchmark radis-mlx against the anchors on one model, each engine in one run.

llama.cpp engine: radis-mlx (the proxy) against the llama.cpp child it supervises (the bare engine).
MLX engine: radis-mlx against `mlx_lm.server` (the anchor) and `mlx_lm.stream_generate` (the raw engine).
The targets are measured alternately, round by round, so they see the same machine state.
distributed: one radis-mlx server serving the model as one MLX process, pipeline over 2 ranks and
tensor over 3, measured one at a time, each split against the one process (bench/distributed.py).

  decode tok/s        single stream: (completion_tokens - 1) / (last token - first token)
  TTFT                request sent → first content token of a short prompt (`--ttft-samples` requests
                      per round, one at a time; 0: the decode requests')
  N-stream tok/s      N concurrent streams: all completion tokens / wall time
  cold TTFT           first turn of a chat with a fresh ~600-token system prompt
  2nd-turn TTFT       that chat's second turn (the prefix is reusable from a prompt cache)
  peak RSS            of each server's process tree, sampled every 0.5 s
  errors              failed streams at the highest concurrency (must be 0)
  proxy CPU           llama.cpp engine: CPU time of radis-mlx's own process (not the child) per token
                      it streamed, over the whole run — what the proxy costs the machine
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from radis_mlx.bench.compare import Row, measure_with_rss
from radis_mlx.bench.measure import DECODE_PROMPT, Stream, Target, stream
from radis_mlx.bench.servers import (
    STARTER_SOURCE,
    MlxLmServer,
    RunningServer,
    child_auth,
    cpu_seconds,
    llama_child,
)
from radis_mlx.config import Config, LlamaCppSettings

MIB = 2**20


def run_llamacpp(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """radis-mlx on the llama.cpp engine against the child it started."""
    threads = f"threads = {args.threads}\n" if args.threads else ""
    config = (
        f"[engines.llamacpp]\nparallel = {max(args.streams)}\n{threads}\n"
        f'[models.bench]\nsource = "{args.model}"\nengine = "llamacpp"\ncontext_length = 4096\n'
    )
    server = RunningServer(config, workdir, extra_args=("--log-level", "warning")).wait_ready()
    try:
        ours = Target("radis-mlx", f"{server.url}/chat/completions", {"model": "bench"})
        asyncio.run(load_model(ours))
        pid, port = llama_child(server.process.pid)
        # The child gets the cache_prompt radis-mlx sends it (its default).
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        child = Target("llama.cpp child", url, {}, child_auth(pid))
        child.extra["cache_prompt"] = LlamaCppSettings().cache_prompt
        pids = {ours.name: server.process.pid, child.name: pid}
        cpu_before = cpu_seconds(server.process.pid)
        rows = measure_with_rss([ours, child], pids, args, args.tokens)
        cpu_after = cpu_seconds(server.process.pid)
        if cpu_before is not None and cpu_after is not None and rows[ours.name].streamed:
            rows[ours.name].cpu_per_token = (cpu_after - cpu_before) * 1000 / rows[ours.name].streamed
    finally:
        server.stop()
    return [rows[ours.name], rows[child.name]]


def run_mlx(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """radis-mlx on the MLX engine against mlx_lm.server, then the raw engine alone."""
    from radis_mlx.engines.mlx.gguf_to_mlx import convert_gguf
    from radis_mlx.store import ModelStore
    from radis_mlx.store.gguf import is_gguf

    cache = Config().cache_dir
    path = ModelStore(cache).materialize(args.model)
    model_dir = convert_gguf(path, cache) if is_gguf(path) else path
    config = f'[models.bench]\nsource = "{args.model}"\nengine = "mlx"\ncontext_length = 4096\n'
    server = RunningServer(config, workdir, extra_args=("--log-level", "warning"))
    anchor = MlxLmServer(model_dir, workdir)
    try:
        server.wait_ready()
        anchor.wait_ready()
        ours = Target("radis-mlx", f"{server.url}/chat/completions", {"model": "bench"})
        theirs = Target("mlx_lm.server", f"{anchor.url}/chat/completions", {})
        pids = {ours.name: server.process.pid, theirs.name: anchor.process.pid}
        rows = measure_with_rss([ours, theirs], pids, args, args.mlx_tokens)
    finally:
        server.stop()
        anchor.stop()
    return [rows[ours.name], rows[theirs.name], raw_mlx(model_dir, args)]


def raw_mlx(model_dir: Path, args: argparse.Namespace) -> Row:
    """mlx_lm.stream_generate in this process: the same greedy request, no server around it."""
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = mlx_lm.load(str(model_dir))[:2]
    messages = [{"role": "user", "content": DECODE_PROMPT}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    runs: list[Stream] = []
    for _ in range(args.rounds + 1):  # the first run warms up
        started = time.perf_counter()
        first = last = 0.0
        count = 0
        for _response in mlx_lm.stream_generate(
            model, tokenizer, prompt, max_tokens=args.mlx_tokens, sampler=make_sampler(0.0)
        ):
            last = time.perf_counter()
            first = first or last
            count += 1
        runs.append(Stream(first - started, (count - 1) / (last - first) if last > first else 0.0, count))
    med = statistics.median
    return Row(
        "mlx_lm.stream_generate", med(r.decode_tps for r in runs[1:]), med(r.ttft for r in runs[1:]) * 1000
    )


async def load_model(target: Target) -> None:
    """One one-token request, which loads the model behind the target; raise if it fails."""
    async with httpx.AsyncClient(timeout=600) as client:
        result = await stream(
            client, target, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        )
    if result.error:
        raise RuntimeError(f"{target.name} failed to answer: {result.error}")


def report(
    engine: str, rows: list[Row], args: argparse.Namespace, tokens: int, *, all_ours: bool = False
) -> bool:
    """Print one engine's table and ratios; False when a radis-mlx stream failed at the top concurrency.

    The first row is radis-mlx, the others anchors; with `all_ours` every row is radis-mlx, and each
    later row is compared with the first (the reference).
    """
    top = max(args.streams)
    print(f"\n== {engine} engine: {args.model}, {tokens} tokens, {args.rounds} rounds (medians)")
    heads = ["decode tok/s", "TTFT ms", *(f"{n}-stream tok/s" for n in args.streams)]
    heads += ["cold TTFT ms", "2nd-turn TTFT ms", "peak RSS MiB"]
    print(f"{'':24}" + "".join(f"{h:>17}" for h in heads))
    for row in rows:
        cells = [row.decode, row.ttft, *(row.streams.get(n, 0.0) for n in args.streams)]
        cells += [row.cold, row.second, row.rss / MIB]
        print(f"{row.name:24}" + "".join(f"{c:17.1f}" if c else f"{'-':>17}" for c in cells))
    for other in rows[1:]:
        # A ratio row reads "ours / theirs"; with all_ours, "this row / the first".
        ours, theirs = (other, rows[0]) if all_ours else (rows[0], other)
        ratios = [_ratio(ours.decode, theirs.decode), _ratio(theirs.ttft, ours.ttft)]
        ratios += [_ratio(ours.streams.get(n, 0), theirs.streams.get(n, 0)) for n in args.streams]
        ratios += [
            _ratio(theirs.cold, ours.cold),
            _ratio(theirs.second, ours.second),
            _ratio(ours.rss, theirs.rss),
        ]
        label = (f"{other.name} / 1st" if all_ours else f"ours / {other.name}")[:23]
        print(f"{label:24}" + "".join(f"{r:17.3f}" if r else f"{'-':>17}" for r in ratios))
    if all_ours:
        print(f"(ratios: row / {rows[0].name} for rates and RSS; inverse for TTFT, so > 1 favours the row)")
    else:
        print("(ratios: ours / theirs for rates and RSS; theirs / ours for TTFT, so > 1 favours radis-mlx)")
    for row in rows:
        if row.cold:
            second = _ratio(row.second, row.cold)
            print(f"2nd-turn / cold TTFT, {row.name}: {second:.3f} ({row.prompt_tokens}-token first prompt)")
    for row in rows:
        if row.cpu_per_token:
            print(
                f"proxy CPU per streamed token: {row.cpu_per_token:.3f} ms "
                f"({row.name}'s own process, not the child; {row.streamed} tokens)"
            )
    served = [row for row in rows if row.streams]
    print(f"errors at {top} streams: " + ", ".join(f"{row.name} {row.errors}" for row in served))
    # radis-mlx's own rows; an anchor's failures are printed, not ours to fail on
    return all(row.errors == 0 for row in (rows if all_ours else rows[:1]))


def _levels(text: str) -> list[int]:
    return sorted({int(n) for n in str(text).split(",")})


def _ratio(a: float, b: float) -> float:
    return a / b if a and b else 0.0


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (shared by scripts/bench.py and `radis-mlx bench`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--engines",
        default="llamacpp,mlx",
        help="comma-separated: llamacpp, mlx, distributed (MLX: 1 process, pipeline 2 ranks, tensor 3)",
    )
    p.add_argument("--model", default=STARTER_SOURCE, help="a GGUF source, as in models.toml")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=128, help="completion tokens per request on llama.cpp")
    p.add_argument("--mlx-tokens", type=int, default=16, help="completion tokens per request on MLX")
    p.add_argument("--streams", default="1,4,8,16", help="comma-separated concurrency levels")
    p.add_argument(
        "--distributed-tokens", type=int, default=8, help="completion tokens per request, distributed"
    )
    p.add_argument("--distributed-streams", default="1,2", help="concurrency levels, distributed")
    p.add_argument(
        "--prefix-words", type=int, default=400, help="system-prompt words of the chat (~1.5 tok/word)"
    )
    p.add_argument("--turn-tokens", type=int, default=8, help="completion tokens per chat turn")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: its default)")
    p.add_argument(
        "--ttft-samples",
        type=int,
        default=8,
        help="short requests per target and round for TTFT (0: the decode requests' TTFT)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; exit status 1 if radis-mlx failed a stream at the top."""
    args = parser().parse_args(argv)
    args.streams = _levels(args.streams)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    ok = True
    with tempfile.TemporaryDirectory() as workdir:
        for engine in engines:
            folder = Path(workdir) / engine
            folder.mkdir()
            if engine == "llamacpp":
                ok &= report("llama.cpp", run_llamacpp(args, folder), args, args.tokens)
            elif engine == "mlx":
                ok &= report("MLX", run_mlx(args, folder), args, args.mlx_tokens)
            elif engine == "distributed":
                from radis_mlx.bench.distributed import run_distributed

                # TTFT from the decode requests: a tensor split's short request takes seconds here
                sizes = {"streams": _levels(args.distributed_streams), "ttft_samples": 0}
                sized = argparse.Namespace(**{**vars(args), **sizes})
                rows = run_distributed(sized, folder)
                ok &= report("MLX distributed", rows, sized, args.distributed_tokens, all_ours=True)
            else:
                raise SystemExit(f"unknown engine {engine!r}: llamacpp, mlx or distributed")
    return 0 if ok else 1
