"""Idle follower ranks wait on a socket, not inside a collective.

The ring backend's collectives poll: a follower waiting in the next request's header all_sum keeps a
core busy for as long as the model sits loaded. So rank 0 rings every follower (one byte over TCP)
just before it starts a request's collectives, and followers block in recv until then. A closed
connection tells a follower that rank 0 is gone.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time

_RANK = struct.Struct("!i")


def leader_address() -> str | None:
    """Rank 0's IP in the ring backend's hostfile (what followers reach it by); None without one."""
    path = os.environ.get("MLX_HOSTFILE")
    if not path:
        return None
    try:
        with open(path) as file:
            ring: list[list[str]] = json.load(file)
        return ring[0][0].rsplit(":", 1)[0]
    except (OSError, ValueError, IndexError):
        return None


class Doorbell:
    """Rank 0's end: one connection per follower, rung before every request."""

    def __init__(self, host: str, port: int, followers: int) -> None:
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._followers = followers
        self._bells: list[socket.socket] = []

    def wait_for_followers(self, timeout: float) -> None:
        """Accept each follower once (by its rank), then stop listening."""
        self._listener.settimeout(timeout)
        ranks: set[int] = set()
        try:
            while len(ranks) < self._followers:
                conn, _ = self._listener.accept()
                conn.settimeout(timeout)
                rank = _RANK.unpack(conn.recv(_RANK.size, socket.MSG_WAITALL))[0]
                if not 0 < rank <= self._followers or rank in ranks:
                    conn.close()  # not one of ours
                    continue
                conn.settimeout(None)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ranks.add(rank)
                self._bells.append(conn)
        finally:
            self._listener.close()

    def ring(self) -> None:
        """Wake every follower for the collectives that follow."""
        for bell in self._bells:
            bell.sendall(b"\x01")


class Bell:
    """A follower's end."""

    def __init__(self, host: str, port: int, rank: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:  # rank 0 may still be loading its shard
            try:
                self._conn = socket.create_connection((host, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._conn.settimeout(None)
        self._conn.sendall(_RANK.pack(rank))

    def wait(self) -> bool:
        """Block until rank 0 rings (True) or goes away (False)."""
        try:
            return bool(self._conn.recv(1))
        except OSError:
            return False
