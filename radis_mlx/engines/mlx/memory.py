"""Hand memory that is free but kept for reuse back to the system, once a model's thread is idle.

MLX keeps freed buffers in its own cache, and on Linux glibc's malloc keeps freed heap pages in its
arenas: after a burst of requests the process stays at its peak RSS although the memory is free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where there is one (not on macOS, whose allocator returns pages itself)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)  # musl has none


def release_free_memory() -> None:
    """Empty MLX's buffer cache and return malloc's free pages to the system."""
    import mlx.core as mx

    mx.clear_cache()
    if (trim := _malloc_trim()) is not None:
        trim(0)
