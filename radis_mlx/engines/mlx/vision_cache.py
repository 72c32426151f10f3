"""Prompt-cache keys for prompts with images: every image's placeholder tokens are the same ids, so the
token ids alone would let image A's KV cache answer for image B.

The key is the prompt's ids with each run of placeholder ids replaced by a negative id derived from the
image's hash (mlx-lm's server does the same): the same screenshot sent again keys the same and reuses its
prefix, a different image diverges at its first placeholder. Where a model spreads one image over several
runs (tiles), runs cannot be told apart per image, and every run takes one id from all the images' hashes:
still never stale, only less reuse when a later image changes.
"""

from __future__ import annotations

import hashlib


def image_id(*digests: str) -> int:
    """A negative id (never a real token) standing for these images."""
    text = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
    return -1 - int(text[:15], 16)


def placeholder_runs(tokens: list[int], placeholder: int) -> list[tuple[int, int]]:
    """(start, end) of each run of the image placeholder id in tokens."""
    runs: list[tuple[int, int]] = []
    for i, token in enumerate(tokens):
        if token != placeholder:
            continue
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def image_cache_key(tokens: list[int], placeholder: int, digests: list[str]) -> list[int]:
    """The prompt cache's key for a prompt whose images (in order) have these sha256 digests."""
    runs = placeholder_runs(tokens, placeholder)
    if not runs or not digests:
        return list(tokens)
    ids = [image_id(d) for d in digests] if len(runs) == len(digests) else [image_id(*digests)] * len(runs)
    key = list(tokens)
    for (start, end), value in zip(runs, ids, strict=True):
        key[start:end] = [value] * (end - start)
    return key
