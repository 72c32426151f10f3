"""Whether processes the tests started (servers, llama.cpp children, ranks) are still running."""

from __future__ import annotations

import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Running: it exists and is not a zombie (a reaped-later child still answers kill 0)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_gone(pids: list[int], timeout: float) -> bool:
    """Wait up to `timeout` seconds for every pid to stop running; whether they all did."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
