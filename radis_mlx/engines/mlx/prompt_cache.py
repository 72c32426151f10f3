"""KV caches of finished requests and of message boundaries, reused by the next prompt that shares them.

Multi-turn chats and agents resend their whole history; the longest cached prefix is copied in and only the
rest of the prompt is prefilled. Two tiers: RAM (mlx-lm's LRUPromptCache: prefix search and a byte-bounded
LRU) and, under it, the model's KV files on disk (kv_disk.py), which survive unloads and restarts.
Checkpoints at message boundaries (the system prompt + tools; the last message before the generation
prompt) let a conversation whose tail changed, and other conversations with the same system prompt, reuse
the head; for caches that cannot be trimmed back (sliding-window, SSM/hybrid layers) they are the only way
to reuse anything. Disk writes: the system checkpoint when it is made, everything else when the RAM tier
evicts it or the model unloads (write-back: an agent resending 30k tokens a turn would otherwise rewrite
them every turn). Worker thread only.
"""

from __future__ import annotations

from typing import Any

from radis_mlx.engines.mlx.kv_disk import MlxDiskTier

_KEY = "model"  # LRUPromptCache can hold several models' caches; each engine has its own


class PromptCache:
    """Longest-prefix lookup over the RAM tier (at most max_bytes) and the disk tier under it."""

    def __init__(self, max_bytes: int, disk: MlxDiskTier | None = None) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self.max_bytes = max_bytes
        self.disk = disk
        self._lru = LRUPromptCache(max_size=1 << 16, max_bytes=max_bytes)
        self.trimmable: bool | None = None  # known from the first cache kept
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        if disk is not None:  # write-back: what the RAM tier evicts goes to disk
            pop = self._lru._trie.pop

            def pop_and_keep(model: Any, tokens: list[int]) -> Any:
                entry = pop(model, tokens)
                disk.put(list(tokens), entry.prompt_cache, entry.cache_type)
                return entry

            self._lru._trie.pop = pop_and_keep  # type: ignore[method-assign]

    @property
    def nbytes(self) -> int:
        return int(self._lru.nbytes)

    def __len__(self) -> int:
        return len(self._lru)

    def fetch(self, tokens: list[int]) -> tuple[list[Any] | None, int]:
        """A private copy of the cache for the longest stored prefix of tokens, and its length.

        At least one token is always left to prefill: the model must see the last one to sample.
        """
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        if not self.max_bytes:
            return None, 0
        cache, rest = self._lru.fetch_nearest_cache(_KEY, tokens)
        if cache is not None and not rest:  # the whole prompt is cached: step back one token
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                rest = tokens[-1:]
            else:
                cache, rest = None, tokens
        cached = len(tokens) - len(rest) if cache is not None else 0
        if self.disk is not None:
            trimmable = self.trimmable if self.trimmable is not None else True
            loaded, reused = self.disk.load(tokens, trimmable, better_than=cached)
            if loaded is not None:
                self.disk_hits += 1
                cache, cached = loaded, reused
        if cache is None:
            self.misses += 1
            return None, 0
        self.hits += 1
        return cache, cached

    def insert(self, tokens: list[int], cache: list[Any], kind: str = "assistant") -> None:
        """Keep the cache of exactly these tokens (the LRU drops the oldest beyond max_bytes)."""
        if self.max_bytes and tokens and cache:
            import mlx.core as mx
            from mlx_lm.models.cache import can_trim_prompt_cache

            # A cache taken out of a batch is a lazy copy of a slice: until it is evaluated it holds
            # the whole batch's KV arrays (and their graph) alive, far beyond the bytes it counts.
            mx.eval([c.state for c in cache])
            if self.trimmable is None:
                self.trimmable = can_trim_prompt_cache(cache)
            self._lru.insert_cache(_KEY, list(tokens), cache, cache_type=kind)

    def checkpoint(self, tokens: list[int], cache: list[Any], kind: str) -> None:
        """A message boundary's cache: the system prompt's goes to disk at once (other conversations share
        it); in RAM only for caches that cannot be trimmed (a trimmable longer entry serves its prefixes)."""
        from mlx_lm.models.cache import can_trim_prompt_cache

        if not self.max_bytes or not tokens:
            return
        trimmable = can_trim_prompt_cache(cache)
        if kind == "system" and self.disk is not None:
            self.disk.put(list(tokens), cache, kind)
        if not trimmable:
            self.insert(tokens, cache, kind)

    def wants_checkpoints(self) -> bool:
        """Whether boundary caches are worth taking (they cost a copy of the prefix's KV)."""
        return bool(self.max_bytes) and (self.disk is not None or self.trimmable is False)

    def persist(self) -> None:
        """Write what is only in RAM to disk (the model unloads: keep its caches for the next load)."""
        if self.disk is None:
            return
        trie, order = self._lru._trie, self._lru._lru
        for kind in order._ordering:
            for model, tokens in list(order._lrus[kind]):
                self.disk.put(list(tokens), trie.get(model, tokens).prompt_cache, kind, wait=True)
        self.disk.flush()

    def stats(self) -> dict[str, int]:
        counts = {
            "prompt_cache_hits": self.hits,
            "prompt_cache_misses": self.misses,
            "prompt_cache_entries": len(self),
            "prompt_cache_bytes": self.nbytes,
        }
        if self.disk is not None:
            index = self.disk.index
            counts |= {
                "prompt_cache_disk_hits": index.stats.hits,
                "prompt_cache_disk_entries": len(index),
                "prompt_cache_disk_bytes": index.nbytes,
                "prompt_cache_disk_writes": index.stats.writes,
                "prompt_cache_disk_corrupt": index.stats.corrupt,
            }
        return counts
