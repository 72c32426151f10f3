"""An MLX model's prompt-cache files: mlx-lm's prompt-cache safetensors in the model's KV folder.

Writes happen on a writer thread from a short queue (a full queue drops the write: decoding never waits on
the disk); the model thread only compacts the arrays it hands over. Loads run on the model thread, which
owns MLX; a file that fails to load, or holds other tokens than its sidecar says, is removed, never used.
The folder's fingerprint (engines/kv_index.py) is the model's weights (stat identity, as gguf_to_mlx keys
its conversions), its config.json, and the mlx / mlx-lm versions that define the cache's state layout.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from radis_mlx.engines.kv_index import KVIndex, model_folder, token_key
from radis_mlx.engines.mlx.prompt import common_prefix

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"


def mlx_identity(folder: Path, source: Path) -> dict[str, Any]:
    """What makes a stored KV cache valid for a loaded MLX model (and which model it was, for rm)."""
    from importlib.metadata import version

    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.safetensors"))
    return {
        "engine": "mlx",
        "source": str(source.resolve()),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "config": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest(),
        "weights": weights,
    }


class MlxDiskTier:
    """The disk under a model's RAM prompt cache."""

    def __init__(self, root: Path, folder: Path, source: Path, max_bytes: int, min_tokens: int = 32) -> None:
        identity = mlx_identity(folder, source)
        self.index = KVIndex(model_folder(root, identity), SUFFIX, max_bytes)
        self.fingerprint = self.index.folder.name
        self.min_tokens = min_tokens
        self._queue: queue.Queue[tuple[list[int], list[Any], str] | None] = queue.Queue(maxsize=4)
        self._writer = threading.Thread(
            target=self._write_loop, name=f"kv-writer-{self.fingerprint}", daemon=True
        )
        self._writer.start()

    def put(self, tokens: list[int], cache: list[Any], kind: str, *, wait: bool = False) -> None:
        """Queue a write of exactly these tokens' cache (model thread). It never blocks, dropping the write
        when the queue is full, unless `wait` (an unload persisting its RAM tier)."""
        if len(tokens) < self.min_tokens or not self.index.writable or self.index.has(token_key(tokens)):
            return
        try:
            self._queue.put((list(tokens), compact(cache), kind), block=wait)
        except queue.Full:
            self.index.stats.dropped += 1

    def load(self, tokens: list[int], trimmable: bool, better_than: int) -> tuple[list[Any] | None, int]:
        """The longest stored prefix of `tokens` longer than `better_than`, fitted to them; else (None, 0)."""
        from mlx_lm.models.cache import load_prompt_cache, trim_prompt_cache

        for _ in range(3):  # a bad file is removed: look again
            reusable, key = self.index.lookup(tokens, trimmable)
            if key is None or reusable <= better_than:
                self.index.stats.misses += 1
                return None, 0
            stored = self.index.tokens_of(key)
            try:
                if stored is None:
                    raise ValueError("no sidecar")
                cache = load_prompt_cache(str(self.index.data_path(key)))
                _evaluate(cache)
            except Exception as exc:  # truncated, corrupt, foreign: skipped and removed
                self.index.discard(key, f"{type(exc).__name__}: {exc}")
                continue
            common = common_prefix(stored, tokens)
            use = min(common, len(tokens) - 1)
            if use < len(stored):
                if not trimmable:
                    self.index.stats.misses += 1
                    return None, 0
                trim_prompt_cache(cache, len(stored) - use)
            self.index.hit(key, use)
            return cache, use
        return None, 0

    def flush(self) -> None:
        """Wait until queued writes are on disk (unload, tests)."""
        self._queue.join()

    def close(self) -> None:
        self.flush()
        self._queue.put(None)

    def _write_loop(self) -> None:
        from mlx_lm.models.cache import save_prompt_cache

        while (item := self._queue.get()) is not None:
            tokens, cache, kind = item
            temporary = self.index.temporary_path(token_key(tokens))
            try:
                save_prompt_cache(str(temporary), cache)
                self.index.commit(temporary, tokens, kind, self.fingerprint)
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self.index.full_disk(exc)
                else:
                    log.warning("KV cache file not written: %s", exc)
            except Exception:
                temporary.unlink(missing_ok=True)
                log.exception("KV cache file not written")
            finally:
                self._queue.task_done()
        self._queue.task_done()


def compact(cache: list[Any]) -> list[Any]:
    """Copies of the cache objects holding exactly the stored positions, evaluated: a KVCache grows in
    256-row steps and trim() only moves its offset, so a file would carry the slack; new objects also keep
    the live cache's later in-place updates away from the writer thread."""
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    out = []
    for layer in cache:
        if type(layer) is KVCache and layer.keys is not None:
            copy = KVCache()
            copy.keys = mx.contiguous(layer.keys[..., : layer.offset, :])
            copy.values = mx.contiguous(layer.values[..., : layer.offset, :])
            copy.offset = layer.offset
            out.append(copy)
        else:
            out.append(type(layer).from_state(layer.state) if hasattr(type(layer), "from_state") else layer)
    _evaluate(out)
    return out


def _evaluate(cache: list[Any]) -> None:
    import mlx.core as mx

    mx.eval([layer.state for layer in cache])
