"""Idle follower ranks wait on a socket, not inside a collective.

The ring backend's collectives poll: a follower waiting in the next request's header all_sum keeps a
core busy for as long as the model sits loaded. So rank 0 rings every follower (one byte over TCP)
just before it starts a request's collectives, and followers block in recv until then. A closed
connection tells a follower that rank 0 is gone.

Rank 0 listens on its hostfile address (the LAN on a real cluster), so each follower proves it knows
the group's secret: rank 0 sends a fresh nonce, the follower answers its rank and an HMAC of both. A
peer that sends nothing, too little or a wrong answer within a few seconds is dropped and rank 0 goes
on waiting for its followers; nothing a peer sends can end rank 0.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import select
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import cast

log = logging.getLogger("radis_mlx.distributed.rank")

_RANK = struct.Struct("!i")
_NONCE = 16
_ANSWER = _RANK.size + hashlib.sha256().digest_size
HANDSHAKE_TIMEOUT = 5.0  # seconds a peer has to answer the nonce
MAX_PENDING = 64  # handshakes under way at once; more peers are hung up on at once


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


def read_secret(timeout: float) -> str:
    """The group's secret: the first line on stdin (radis-mlx writes it to mlx.launch, which hands it
    to every rank), read byte by byte so nothing after it is consumed; empty if none comes in time."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([0], [], [], remaining)[0]:
            break
        byte = os.read(0, 1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace").strip()


def answer(secret: str, nonce: bytes, rank: int) -> bytes:
    """A follower's proof that it knows the secret: its rank and an HMAC over the nonce and the rank."""
    packed = _RANK.pack(rank)
    return packed + hmac.new(secret.encode(), nonce + packed, hashlib.sha256).digest()


@dataclass
class _Handshake:
    nonce: bytes
    peer: object
    expires: float
    received: bytes = b""


class Doorbell:
    """Rank 0's end: one connection per follower, rung before every request."""

    def __init__(self, host: str, port: int, followers: int, secret: str) -> None:
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._followers = followers
        self._secret = secret
        self._bells: list[socket.socket] = []

    def wait_for_followers(self, timeout: float) -> None:
        """Accept each follower once (by its rank, proven by the secret), then stop listening.

        Handshakes run side by side, each bounded by HANDSHAKE_TIMEOUT, so no peer holds up another.
        Raises TimeoutError when the followers are not all in after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        ranks: set[int] = set()
        pending: dict[socket.socket, _Handshake] = {}
        selector = selectors.DefaultSelector()
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ)
        try:
            while len(ranks) < self._followers:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError(f"{len(ranks)} of {self._followers} followers rang in")
                for conn in [c for c, h in pending.items() if h.expires <= now]:
                    self._drop(selector, pending, conn, "no answer in time")
                until = min([deadline, *(h.expires for h in pending.values())])
                for key, _ in selector.select(max(until - now, 0.0)):
                    if key.fileobj is self._listener:
                        self._greet(selector, pending)
                        continue
                    conn = cast(socket.socket, key.fileobj)
                    rank = self._read_answer(selector, pending, conn)
                    if rank is None:
                        continue
                    if not 0 < rank <= self._followers or rank in ranks:
                        self._drop(selector, pending, conn, f"rank {rank} is not a missing follower")
                        continue
                    selector.unregister(conn)
                    del pending[conn]
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    ranks.add(rank)
                    self._bells.append(conn)
        finally:
            selector.close()
            self._listener.close()
            for conn in pending:
                conn.close()

    def _greet(self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Handshake]) -> None:
        """A new peer: send it a nonce and wait for its answer (at most MAX_PENDING at once)."""
        try:
            conn, peer = self._listener.accept()
        except OSError:
            return
        if len(pending) >= MAX_PENDING:
            conn.close()
            return
        nonce = secrets.token_bytes(_NONCE)
        try:
            conn.settimeout(1.0)
            conn.sendall(nonce)
            conn.setblocking(False)
        except OSError:
            conn.close()
            return
        pending[conn] = _Handshake(nonce, peer, time.monotonic() + HANDSHAKE_TIMEOUT)
        selector.register(conn, selectors.EVENT_READ)

    def _read_answer(
        self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Handshake], conn: socket.socket
    ) -> int | None:
        """The rank a peer has proven once its whole answer is in; None meanwhile or when dropped."""
        handshake = pending[conn]
        try:
            piece = conn.recv(_ANSWER - len(handshake.received))
        except BlockingIOError:
            return None
        except OSError as exc:
            self._drop(selector, pending, conn, str(exc))
            return None
        if not piece:
            self._drop(selector, pending, conn, f"it hung up after {len(handshake.received)} bytes")
            return None
        handshake.received += piece
        if len(handshake.received) < _ANSWER:
            return None
        (rank,) = _RANK.unpack(handshake.received[: _RANK.size])
        if not hmac.compare_digest(handshake.received, answer(self._secret, handshake.nonce, rank)):
            self._drop(selector, pending, conn, "a wrong answer")
            return None
        return int(rank)

    @staticmethod
    def _drop(
        selector: selectors.BaseSelector,
        pending: dict[socket.socket, _Handshake],
        conn: socket.socket,
        why: str,
    ) -> None:
        log.warning("doorbell: dropped %s, which did not prove a rank (%s)", pending[conn].peer, why)
        selector.unregister(conn)
        del pending[conn]
        conn.close()

    def ring(self) -> None:
        """Wake every follower for the collectives that follow."""
        for bell in self._bells:
            bell.sendall(b"\x01")

    def close(self) -> None:
        """Hang up on every follower (they then leave: rank 0 is gone)."""
        for bell in self._bells:
            bell.close()


class Bell:
    """A follower's end."""

    def __init__(self, host: str, port: int, rank: int, timeout: float, secret: str) -> None:
        deadline = time.monotonic() + timeout
        while True:  # rank 0 may still be loading its shard
            try:
                self._conn = socket.create_connection((host, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            # Rank 0 may be busy with other peers' handshakes: wait for the nonce up to our deadline.
            self._conn.settimeout(max(deadline - time.monotonic(), HANDSHAKE_TIMEOUT))
            nonce = b""
            while len(nonce) < _NONCE:
                piece = self._conn.recv(_NONCE - len(nonce))
                if not piece:
                    raise ConnectionError("rank 0 closed the doorbell before its nonce")
                nonce += piece
            self._conn.sendall(answer(secret, nonce, rank))
            self._conn.settimeout(None)
        except BaseException:
            self._conn.close()
            raise

    def wait(self) -> bool:
        """Block until rank 0 rings (True) or goes away (False)."""
        try:
            return bool(self._conn.recv(1))
        except OSError:
            return False

    def close(self) -> None:
        self._conn.close()
