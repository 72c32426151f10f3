"""Smoke runs of the benchmarks (`radis-mlx bench`, scripts/bench_embeddings.py) with tiny settings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


def test_bench_runs_both_paths_and_reports_every_figure(smollm_gguf):
    args = ["--engines", "llamacpp", "--rounds", "1", "--tokens", "4", "--streams", "1,2"]
    args += ["--prefix-words", "60", "--turn-tokens", "2", "--ttft-samples", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "radis_mlx", "bench", *args], capture_output=True, text=True, timeout=300
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("radis-mlx", "llama.cpp"))}
    assert set(rows) == {"radis-mlx", "llama.cpp"}
    # decode, TTFT, 1- and 2-stream rates, cold and 2nd-turn TTFT, RSS: all measured (no "-")
    assert all(len(re.findall(r"\d+\.\d", line)) == 7 for line in rows.values()), out
    assert "errors at 2 streams: radis-mlx 0, llama.cpp child 0" in out
    assert re.search(r"ours / llama\.cpp child\s+\d", out)
    # what the proxy's own process spent per token it streamed: measured, and not absurd
    cpu = re.search(r"proxy CPU per streamed token: (\d+\.\d+) ms \(radis-mlx's own process", out)
    assert cpu and 0 < float(cpu.group(1)) < 50, out


@pytest.mark.full_only  # ~2 minutes here: RADIS_TESTS_FULL=1 runs it
def test_bench_distributed_mode_reports_one_process_and_both_splits(smollm_gguf):
    # The smallest run: 2 tokens, one round, one concurrency level (each split serves one request at a time).
    args = ["--engines", "distributed", "--rounds", "1", "--distributed-tokens", "2"]
    args += ["--distributed-streams", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "radis_mlx", "bench", *args], capture_output=True, text=True, timeout=600
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    names = ("one process", "pipeline, 2 ranks", "tensor, 3 ranks")
    lines = [line for line in out.splitlines() if "/ 1st" not in line]  # not the ratio rows
    rows = {name: line[len(name) :] for line in lines for name in names if line.startswith(name)}
    assert set(rows) == set(names), out
    for line in rows.values():
        # decode, TTFT, 2-stream rate, RSS: measured and positive; the chat columns are left out ("-")
        figures = [float(f) for f in re.findall(r"\d+\.\d+", line)]
        assert len(figures) == 4 and all(f > 0 for f in figures), out
        assert line.split().count("-") == 2, out
    assert re.search(r"tensor, 3 ranks / 1st\s+\d+\.\d{3}", out), out
    assert "errors at 2 streams: one process 0, pipeline, 2 ranks 0, tensor, 3 ranks 0" in out


def test_embedding_bench_measures_every_target_and_checks_the_vectors(minilm_dir, tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_embeddings.py"
    args = ["--count", "8", "--batches", "1,4", "--engines", "llamacpp", "--json", str(tmp_path / "out.json")]
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["numpy"]["per_s"] > 0
    for target in ("radis-mlx (llama.cpp)", "llama.cpp child"):
        rows = report[target]["batches"]
        assert set(rows) == {"1", "4"} and report[target]["peak_rss_mib"] > 10
        assert all(r["per_s"] > 0 and r["per_cpu_s"] > 0 and r["min_cosine"] > 0.9999 for r in rows.values())
    # radis-mlx counts the tokens it sent; the child counted the same text itself.
    assert rows["4"]["tokens"] == report["radis-mlx (llama.cpp)"]["batches"]["4"]["tokens"]
    assert re.search(r"B=4: radis-mlx/child \d+\.\d\d wall", result.stdout), result.stdout
