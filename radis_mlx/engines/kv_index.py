"""The disk tier of a model's prompt cache: one folder of KV files, keyed by token sequence, LRU by bytes.

Both engines keep their own file format in it (MLX: mlx-lm's prompt-cache safetensors; llama.cpp: its slot
save files). What is shared is here: where an entry's file is, the sidecar that describes it, the longest
stored prefix of a prompt, and eviction. Layout: `<cache>/kv/<fingerprint>/<key><suffix>` plus `<key>.json`
(format, fingerprint, tokens, size, kind), written last with an atomic rename, so an entry exists once both
are complete and two servers sharing the folder never read a half-written file. The sidecars are the index:
a restart rebuilds it from them, removing leftovers, truncated and foreign files. The LRU clock is the
sidecar's mtime, touched on every hit, so the order survives restarts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "radis-kv-1"
BLOCK = 256  # tokens per chained block hash: partial matches for caches that can be trimmed
HEAD = 16  # entries sharing their first HEAD tokens are compared in full (partial matches of short prompts)


def token_key(tokens: list[int]) -> str:
    """An entry's name: a hash of exactly these tokens."""
    return hashlib.blake2b(array("i", tokens).tobytes(), digest_size=16).hexdigest()


def block_chain(tokens: list[int]) -> list[bytes]:
    """h_i = H(h_{i-1} || block i) for each whole block: equal h_i means equal first (i+1)*BLOCK tokens."""
    out, previous = [], b""
    raw = array("i", tokens).tobytes()
    for i in range(len(tokens) // BLOCK):
        previous = hashlib.blake2b(
            previous + raw[i * BLOCK * 4 : (i + 1) * BLOCK * 4], digest_size=12
        ).digest()
        out.append(previous)
    return out


def model_folder(root: Path, identity: dict[str, Any]) -> Path:
    """`root`/<fingerprint of the identity>, made with fingerprint.json (the identity, for rm and humans)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    folder = root / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "fingerprint.json"
    if not info.exists():
        atomic_write(info, text.encode())
    return folder


def atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass
class Entry:
    key: str
    tokens: int
    size: int
    last_used: float
    kind: str
    blocks: list[bytes] = field(repr=False, default_factory=list)
    ids: list[int] = field(repr=False, default_factory=list)  # the tokens themselves


@dataclass
class DiskStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    evictions: int = 0
    corrupt: int = 0
    dropped: int = 0  # writes skipped: queue full, or the disk full
    cached_tokens: int = 0


class KVIndex:
    """The entries of one model's KV folder; thread-safe (a writer thread commits, the model thread reads)."""

    def __init__(self, folder: Path, suffix: str, max_bytes: int) -> None:
        self.folder = folder
        self.suffix = suffix
        self.max_bytes = max_bytes
        self.stats = DiskStats()
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._by_length: dict[int, set[str]] = {}
        self._blocks: dict[bytes, set[str]] = {}
        self._heads: dict[tuple[int, ...], set[str]] = {}
        self.nbytes = 0
        self._full_warned = False
        self._scan()

    def __len__(self) -> int:
        return len(self._entries)

    def data_path(self, key: str) -> Path:
        return self.folder / (key + self.suffix)

    def temporary_path(self, key: str) -> Path:
        """Where a writer puts a file before commit() renames it (it must end in the suffix)."""
        return self.folder / f"{key}.tmp-{os.getpid()}-{threading.get_ident()}{self.suffix}"

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def tokens_of(self, key: str) -> list[int] | None:
        """The exact tokens an entry holds (its sidecar's), None when it is gone or unreadable."""
        try:
            meta = json.loads((self.folder / f"{key}.json").read_text())
            return array("i", base64.b64decode(meta["tokens"])).tolist()
        except (OSError, ValueError, KeyError):
            return None

    def lookup(self, tokens: list[int], trimmable: bool) -> tuple[int, str | None]:
        """Index only: (tokens reusable, key) of the best entry for this prompt, at least one token left to
        prefill. Exact stored prefixes serve every cache; trimmable caches also take an entry sharing whole
        blocks (the load then trims it to the exact common prefix)."""
        limit = len(tokens) - 1
        best, best_key = 0, None
        with self._lock:
            lengths = sorted(n for n in self._by_length if n <= len(tokens))
            raw = array("i", tokens).tobytes()
            digest, done = hashlib.blake2b(digest_size=16), 0
            for n in lengths:  # one hashing pass over the prompt, a digest at each stored length
                digest.update(raw[done * 4 : n * 4])
                done = n
                if n > limit and not trimmable:
                    continue
                key = digest.copy().hexdigest()
                if key in self._by_length[n] and min(n, limit) > best:
                    best, best_key = min(n, limit), key
            if trimmable:  # a longer or diverging entry, cut back to what it shares with the prompt
                chain, depth = block_chain(tokens), 0
                while depth < len(chain) and chain[depth] in self._blocks:
                    depth += 1
                candidates = (
                    self._blocks[chain[depth - 1]] if depth else self._heads.get(tuple(tokens[:HEAD]), set())
                )
                for key in candidates:
                    shared = _shared(self._entries[key].ids, tokens, depth * BLOCK)
                    if min(shared, limit) > best:
                        best, best_key = min(shared, limit), key
        return best, best_key

    def commit(self, temporary: Path, tokens: list[int], kind: str, fingerprint: str) -> None:
        """A written file becomes an entry: renamed into place, its sidecar written last, then eviction."""
        key = token_key(tokens)
        final = self.data_path(key)
        os.replace(temporary, final)
        size = final.stat().st_size
        sidecar = {
            "format": FORMAT,
            "fingerprint": fingerprint,
            "tokens": base64.b64encode(array("i", tokens).tobytes()).decode(),
            "size": size,
            "kind": kind,
        }
        atomic_write(self.folder / f"{key}.json", json.dumps(sidecar).encode())
        with self._lock:
            self._drop(key)
            self._add(Entry(key, len(tokens), size, time.time(), kind, block_chain(tokens), list(tokens)))
            self.stats.writes += 1
            self._evict()

    def hit(self, key: str, reused: int) -> None:
        """An entry was loaded: count it and move it to the front of the LRU (kept across restarts)."""
        with self._lock:
            entry = self._entries.get(key)
            self.stats.hits += 1
            self.stats.cached_tokens += reused
            if entry is not None:
                entry.last_used = time.time()
        with contextlib.suppress(OSError):
            os.utime(self.folder / f"{key}.json")

    def discard(self, key: str, why: str) -> None:
        """An entry whose file turned out bad: skipped and removed, never loaded."""
        log.warning("KV cache file %s removed: %s", self.data_path(key).name, why)
        with self._lock:
            self._drop(key)
            self.stats.corrupt += 1
        self._unlink(key)

    def full_disk(self, exc: OSError) -> None:
        """A write failed for lack of space: writes stop being attempted, with one warning."""
        self.stats.dropped += 1
        if not self._full_warned:
            self._full_warned = True
            log.warning("KV cache disk tier: %s; no more KV files are written until the server restarts", exc)

    @property
    def writable(self) -> bool:
        return not self._full_warned and self.max_bytes > 0

    def _scan(self) -> None:
        for path in self.folder.iterdir():
            if ".tmp-" in path.name:  # an interrupted write (ours, or another server's that died)
                path.unlink(missing_ok=True)
        for sidecar in self.folder.glob("*.json"):
            if sidecar.name == "fingerprint.json":
                continue
            key = sidecar.stem
            try:
                meta = json.loads(sidecar.read_text())
                tokens = array("i", base64.b64decode(meta["tokens"])).tolist()
                size = self.data_path(key).stat().st_size
                valid = meta["format"] == FORMAT and size == meta["size"] and token_key(tokens) == key
            except (OSError, ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                log.warning("KV cache entry %s skipped and removed: incomplete or foreign", key)
                self.stats.corrupt += 1
                self._unlink(key)
                continue
            self._add(
                Entry(
                    key,
                    len(tokens),
                    size,
                    sidecar.stat().st_mtime,
                    str(meta.get("kind", "")),
                    block_chain(tokens),
                    tokens,
                )
            )
        with self._lock:
            self._evict()
        for data in self.folder.glob(f"*{self.suffix}"):  # a file whose sidecar never came: unfinished
            if data.name[: -len(self.suffix)] not in self._entries:
                data.unlink(missing_ok=True)

    def _add(self, entry: Entry) -> None:
        self._entries[entry.key] = entry
        self._by_length.setdefault(entry.tokens, set()).add(entry.key)
        for block in entry.blocks:
            self._blocks.setdefault(block, set()).add(entry.key)
        if len(entry.ids) >= HEAD:
            self._heads.setdefault(tuple(entry.ids[:HEAD]), set()).add(entry.key)
        self.nbytes += entry.size

    def _drop(self, key: str) -> Entry | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._by_length[entry.tokens].discard(key)
        if not self._by_length[entry.tokens]:
            del self._by_length[entry.tokens]
        for block in entry.blocks:
            keys = self._blocks.get(block)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._blocks[block]
        head = self._heads.get(tuple(entry.ids[:HEAD]))
        if head is not None:
            head.discard(key)
            if not head:
                del self._heads[tuple(entry.ids[:HEAD])]
        self.nbytes -= entry.size
        return entry

    def _evict(self) -> None:
        while self.nbytes > self.max_bytes and self._entries:
            victim = min(self._entries.values(), key=lambda e: e.last_used)
            self._drop(victim.key)
            self._unlink(victim.key)
            self.stats.evictions += 1

    def _unlink(self, key: str) -> None:
        (self.folder / f"{key}.json").unlink(missing_ok=True)
        self.data_path(key).unlink(missing_ok=True)


def _shared(stored: list[int], tokens: list[int], known: int) -> int:
    """How many leading tokens two sequences share, the first `known` being known equal."""
    end = min(len(stored), len(tokens))
    return next((i for i in range(known, end) if stored[i] != tokens[i]), end)
