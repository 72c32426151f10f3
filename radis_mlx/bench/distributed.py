"""The benchmark's distributed mode: one radis-mlx server serving one model three ways, on loopback.

Single-process MLX, pipeline over 2 ranks, and tensor over 3 ranks (the starter's 9 attention heads
and 3 KV heads divide by 3, not by 2), measured through the same server by `run.measure`, each split
against the single-process row. The two-turn chat is left out: its ~600-token prompt takes minutes
on the ranks of a 2-core machine.

Unlike the other modes the targets are measured one after the other, each alone in the server (idle
groups used to keep cores busy; docs/DISTRIBUTED.md, Limits). So each row's peak RSS is the whole
server tree while that model is the only one loaded (server, launcher, every rank): what serving it
costs. The splits go first, so
the server process never holds a model it has unloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx

from radis_mlx.bench.compare import Row, measure_with_rss
from radis_mlx.bench.measure import Target
from radis_mlx.bench.servers import RunningServer

SINGLE = ("one process", "bench-mlx")
# (row name, model id, models.toml `distributed` table)
SPLITS = [
    ("pipeline, 2 ranks", "bench-pipeline", '{ ranks = 2, strategy = "pipeline", backend = "ring" }'),
    ("tensor, 3 ranks", "bench-tensor", '{ ranks = 3, strategy = "tensor", backend = "ring" }'),
]


def config_text(source: str) -> str:
    """models.toml: the model on the MLX engine, then once per split."""
    # No prompt cache on the single-process entry: the ranks have none, and the decode request repeats.
    config = f'[models.{SINGLE[1]}]\nsource = "{source}"\nengine = "mlx"\ncontext_length = 2048\n'
    config += "prompt_cache_mib = 0\n"
    for _, model_id, table in SPLITS:
        config += f'\n[models.{model_id}]\nsource = "{source}"\ncontext_length = 2048\n'
        config += f"distributed = {table}\n"
    return config


def run_distributed(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """The single-process row, then one row per split: one server, one model loaded at a time."""
    server = RunningServer(config_text(args.model), workdir, extra_args=("--log-level", "warning"))
    rows: dict[str, Row] = {}
    try:
        server.wait_ready()
        for name, model_id in [*((name, model_id) for name, model_id, _ in SPLITS), SINGLE]:
            target = Target(name, f"{server.url}/chat/completions", {"model": model_id})
            # measure() loads the model with its warm-up request
            tokens, pids = args.distributed_tokens, {name: server.process.pid}
            rows[name] = measure_with_rss([target], pids, args, tokens, chat_turns=False)[name]
            unload = {"model": model_id}
            httpx.post(f"{server.base}/api/v0/models/unload", json=unload, timeout=60).raise_for_status()
    finally:
        server.stop()
    return [rows[SINGLE[0]], *(rows[name] for name, _, _ in SPLITS)]
