"""The key/value header of a GGUF file, read without its tensors (the pool's budget, chat and FIM
templates all need a few keys before a model loads; gguf.GGUFReader would parse everything, seconds).

The file is memory-mapped and walked once; scalars and strings are kept, and arrays are skipped
unless named (a vocabulary of 150k strings is then decoded in tens of milliseconds).
"""

from __future__ import annotations

import functools
import mmap
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# GGUF value types: 0-7 and 10-12 are fixed-size scalars, 8 a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_SIZES = {kind: struct.calcsize("<" + fmt) for kind, fmt in _SCALARS.items()}
_STRING, _ARRAY = 8, 9


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
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, _version, _tensors, count = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF":
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
        self.at = start + length
        return self.data[start : self.at].decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, length = struct.unpack_from("<IQ", self.data, self.at)
            self.at += 12
            return [self.value(item) for _ in range(length)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown GGUF value type {kind}")
        (value,) = struct.unpack_from("<" + _SCALARS[kind], self.data, self.at)
        self.at += _SIZES[kind]
        return value

    def skip_array(self) -> None:
        item, length = struct.unpack_from("<IQ", self.data, self.at)
        self.at += 12
        if item in _SIZES:
            self.at += _SIZES[item] * length
            return
        for _ in range(length):
            if item == _ARRAY:
                self.skip_array()
            elif item == _STRING:
                (size,) = struct.unpack_from("<Q", self.data, self.at)
                self.at += 8 + size
            else:
                raise ValueError(f"unknown GGUF value type {item}")
