"""GGUF files: which files are GGUF models, and the key/value header read without its tensors.

A GGUF is known by its name (`*.gguf`) or by its first four bytes (`GGUF`): Ollama keeps its models as
blobs named `sha256-<hex>`, so every check goes through `is_gguf`. Projectors (a vision model's mmproj)
and the later shards of a split model are files beside a model, not models (`model_files`).

The header (the pool's budget, chat and FIM templates all need a few keys before a model loads;
gguf.GGUFReader would parse everything, seconds) is memory-mapped and walked once; scalars and strings
are kept, and arrays are skipped unless named (a vocabulary of 150k strings is then decoded in tens of
milliseconds). The walk is iterative and arrays nest at most MAX_DEPTH deep: a malformed file is a
ValueError, never a RecursionError or a read past its end.
"""

from __future__ import annotations

import functools
import mmap
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

MAGIC = b"GGUF"
# llama.cpp's split naming (gguf-split): "<name>-00001-of-00003.gguf"; shard 1 loads the others.
_SHARD = re.compile(r"^(?P<name>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")

# GGUF value types: 0-7 and 10-12 are fixed-size scalars, 8 a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_SIZES = {kind: struct.calcsize("<" + fmt) for kind, fmt in _SCALARS.items()}
_STRING, _ARRAY = 8, 9
MAX_DEPTH = 8  # arrays of arrays; real files use one level
_RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK


def is_gguf(path: Path) -> bool:
    """A GGUF model file: named `*.gguf` (it need not exist yet) or starting with the GGUF magic."""
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with path.open("rb") as file:
            return file.read(4) == MAGIC
    except OSError:  # a folder, or nothing there
        return False


def is_projector(path: Path) -> bool:
    """A vision projector (mmproj / CLIP) file: served beside a model, never as one."""
    if "mmproj" in path.name.lower():
        return True
    try:
        meta = gguf_metadata(path)
    except (OSError, ValueError, struct.error):
        return False
    return meta.get("general.architecture") == "clip" or meta.get("general.type") == "mmproj"


def split_name(path: Path) -> tuple[str, int, int] | None:
    """(name without the shard suffix, shard number, shard count) of a split GGUF; None if not split."""
    match = _SHARD.match(path.stem if path.suffix.lower() == ".gguf" else path.name)
    if match is None:
        return None
    return match["name"], int(match["index"]), int(match["count"])


def model_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """The model GGUFs among `paths`, each with its name: projectors and shards after the first left out."""
    found = []
    for path in paths:
        split = split_name(path)
        if (split is not None and split[1] != 1) or is_projector(path):
            continue
        found.append((path, split[0] if split else path.stem))
    return found


def weight_bytes(path: Path) -> int:
    """A GGUF's size on disk, with every shard of a split model (found beside the first)."""
    split = split_name(path)
    if split is None:
        return path.stat().st_size
    name, _, count = split
    shards = [path.with_name(f"{name}-{i:05d}-of-{count:05d}{path.suffix}") for i in range(1, count + 1)]
    return sum(shard.stat().st_size for shard in shards if shard.is_file())


def gguf_metadata(path: Path, arrays: Iterable[str] = ()) -> dict[str, Any]:
    """Scalars and strings of a GGUF header, plus the arrays named in `arrays` (as lists).

    Without arrays the answer is cached per file version (the budget asks often); arrays (a whole
    vocabulary) are read each time rather than kept.
    """
    wanted = frozenset(arrays)
    return _read(path, wanted) if wanted else _cached(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _cached(path: Path, mtime: int) -> dict[str, Any]:
    return _read(path, frozenset())


def _read(path: Path, arrays: frozenset[str]) -> dict[str, Any]:
    try:
        return _walk(path, arrays)
    except (struct.error, IndexError, OverflowError, MemoryError) as exc:
        raise ValueError(f"{path.name} has a malformed GGUF header: {exc}") from None


def _walk(path: Path, arrays: frozenset[str]) -> dict[str, Any]:
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, _version, _tensors, count = struct.unpack_from("<4sIQQ", data, 0)
        if magic != MAGIC:
            raise ValueError(f"{path.name} is not a GGUF file")
        header = _Header(data, 24)
        meta: dict[str, Any] = {}
        for _ in range(count):
            key = header.string()
            kind = header.uint32()
            if kind == _ARRAY and key not in arrays:
                header.skip_array()
            else:
                meta[key] = header.value(kind)
        return meta


class _Header:
    """A read position in the mapped header."""

    def __init__(self, data: mmap.mmap, at: int) -> None:
        self.data = data
        self.at = at

    def uint32(self) -> int:
        (value,) = struct.unpack_from("<I", self.data, self.at)
        self.at += 4
        return int(value)

    def string(self) -> str:
        (length,) = struct.unpack_from("<Q", self.data, self.at)
        start = self.at + 8
        if start + length > len(self.data):
            raise ValueError("a string runs past the end of the file")
        self.at = start + length
        return self.data[start : self.at].decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        """One value; an array as a list (of lists, for arrays of arrays), read without recursion."""
        if kind != _ARRAY:
            return self._plain(kind)
        root: list[Any] = []
        stack = [(root, *self._array_header())]  # (list being filled, item type, items left)
        while stack:
            items, item, left = stack[-1]
            if item != _ARRAY:
                items.extend(self._plain(item) for _ in range(left))
                stack.pop()
            elif left == 0:
                stack.pop()
            else:
                stack[-1] = (items, item, left - 1)
                inner: list[Any] = []
                items.append(inner)
                stack.append((inner, *self._nested_header(len(stack))))
        return root

    def skip_array(self) -> None:
        stack = [self._array_header()]  # (item type, items left)
        while stack:
            item, left = stack[-1]
            if item in _SIZES:
                self.at += _SIZES[item] * left
                stack.pop()
            elif left == 0:
                stack.pop()
            elif item == _STRING:
                stack[-1] = (item, left - 1)
                (size,) = struct.unpack_from("<Q", self.data, self.at)
                self.at += 8 + size
            elif item == _ARRAY:
                stack[-1] = (item, left - 1)
                stack.append(self._nested_header(len(stack)))
            else:
                raise ValueError(f"unknown GGUF value type {item}")
            if self.at > len(self.data):
                raise ValueError("an array runs past the end of the file")

    def _plain(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind not in _SCALARS:
            raise ValueError(f"unknown GGUF value type {kind}")
        (value,) = struct.unpack_from("<" + _SCALARS[kind], self.data, self.at)
        self.at += _SIZES[kind]
        return value

    def _array_header(self) -> tuple[int, int]:
        item, length = struct.unpack_from("<IQ", self.data, self.at)
        self.at += 12
        # Each item takes at least this many bytes (a string its length, an array its header).
        smallest = _SIZES.get(item, 8 if item == _STRING else 12)
        if self.at + smallest * length > len(self.data):
            raise ValueError(f"an array of {length} items runs past the end of the file")
        return int(item), int(length)

    def _nested_header(self, depth: int) -> tuple[int, int]:
        if depth >= MAX_DEPTH:
            raise ValueError(f"arrays nested more than {MAX_DEPTH} deep")
        return self._array_header()


def gguf_kind(path: Path) -> Literal["llm", "embedding", "rerank"]:
    """What a GGUF serves: a pooling type in its header marks an embedder (rank: a reranker)."""
    try:
        meta = gguf_metadata(path)
    except (OSError, ValueError, struct.error):
        return "llm"  # unreadable: loading it says why
    pooling = meta.get(f"{meta.get('general.architecture')}.pooling_type")
    if pooling is None:
        return "llm"
    return "rerank" if pooling == _RANK_POOLING else "embedding"
