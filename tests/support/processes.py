"""Whether processes the tests started (servers, llama.cpp children, ranks) are still running.

psutil reads the process table on Linux and macOS alike, so these checks check something on both.
"""

from __future__ import annotations

import time

import psutil


def alive(pid: int) -> bool:
    """Running: it exists and is not a zombie (a reaped-later child still answers kill 0)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def all_gone(pids: list[int], timeout: float) -> bool:
    """Wait up to `timeout` seconds for every pid to stop running; whether they all did."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
