"""A smoke run of the benchmark (`radis-mlx bench`) on llama.cpp with tiny settings."""

from __future__ import annotations

import re
import subprocess
import sys


def test_bench_runs_both_paths_and_reports_every_figure(smollm_gguf):
    args = ["--engines", "llamacpp", "--rounds", "1", "--tokens", "4", "--streams", "1,2"]
    args += ["--prefix-words", "60", "--turn-tokens", "2"]
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
