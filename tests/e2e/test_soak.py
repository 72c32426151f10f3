"""The 60-second soak: 16 clients mixing chat, streams, disconnects, completions and embeddings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.e2e import ENGINES

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.mark.full_only  # ~2 minutes here: RADIS_TESTS_FULL=1 runs it
def test_sixty_second_soak_has_no_errors_and_bounded_memory(server):
    models = [arg for engine in ENGINES for arg in ("--chat-model", f"smollm2-{engine}")]
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--url",
            server.url,
            "--pid",
            str(server.process.pid),
            *models,
            "--embed-model",
            "minilm",
            "--clients",
            "16",
            "--duration",
            "60",
            "--warmup",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    report = json.loads(result.stdout)
    print(json.dumps(report, indent=2))
    assert report["errors"] == 0, report["first_errors"]
    assert report["requests"] >= 30  # MLX on this CPU serves ~1 request/s; llama.cpp many more
    assert set(report["by_kind"]) == {"chat", "stream", "disconnect", "completion", "embedding"}
    # Bounded memory: what the prompt caches hold (bounded by prompt_cache_mib) aside, RSS stays put.
    assert report["rss_growth_net_of_prompt_cache"] < 0.10, report
    assert result.returncode == 0
    # The server is still healthy and serving afterwards.
    assert server.process.poll() is None
