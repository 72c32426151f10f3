"""KV caches of finished requests, reused for the next request that shares their token prefix.

Multi-turn chats and agents resend their whole history; the longest cached prefix is copied in and
only the rest of the prompt is prefilled. mlx-lm's LRUPromptCache does the prefix search and the
byte-bounded LRU; this adds the counts we report and the exact-hit case. Worker thread only.
"""

from __future__ import annotations

from typing import Any

_KEY = "model"  # LRUPromptCache can hold several models' caches; each engine has its own


class PromptCache:
    """Longest-prefix lookup over finished requests' KV caches, at most max_bytes of them."""

    def __init__(self, max_bytes: int) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self.max_bytes = max_bytes
        self._lru = LRUPromptCache(max_size=1 << 16, max_bytes=max_bytes)
        self.hits = 0
        self.misses = 0

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
                cache = None
        if cache is None:
            self.misses += 1
            return None, 0
        self.hits += 1
        return cache, len(tokens) - len(rest)

    def insert(self, tokens: list[int], cache: list[Any]) -> None:
        """Keep the cache of exactly these tokens (the LRU drops the oldest beyond max_bytes)."""
        if self.max_bytes and tokens and cache:
            import mlx.core as mx

            # A cache taken out of a batch is a lazy copy of a slice: until it is evaluated it holds
            # the whole batch's KV arrays (and their graph) alive, far beyond the bytes it counts.
            mx.eval([c.state for c in cache])
            self._lru.insert_cache(_KEY, list(tokens), cache)
