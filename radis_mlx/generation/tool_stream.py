"""Tool-call arguments streamed as they are written, for calls written as `{"name": ..., "arguments": {...}}`.

The generic format's reply (`{"tool_calls": [call, call]}`) and the JSON-bodied native families (Qwen,
Hermes: `<tool_call>call</tool_call>`) write each call as such an object. `CallScanner` reads that JSON text
as it arrives, keeping only enough state to know where it is (depth, strings, escapes): once a call's name is
known it reports the call, then each piece of its `arguments` value as it comes. The pieces are the model's
own text, so they join into exactly the arguments the finished call carries.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from radis_mlx.generation.types import ToolCallDelta

_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGUMENTS = re.compile(r'"arguments"\s*:\s*')


@dataclass
class _Call:
    """One call object's text so far, and how much of its arguments has been reported."""

    index: int
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    text: str = ""
    name: str | None = None
    start: int | None = None  # where the arguments value starts in text
    end: int | None = None  # where it ends (exclusive), once complete
    sent: int = 0
    value_depth: int = 0  # nesting inside the arguments value while scanning it
    value_string: bool = False
    value_escape: bool = False
    scanned: int = 0

    def feed(self, piece: str) -> list[ToolCallDelta]:
        self.text += piece
        if self.start is None and (found := _ARGUMENTS.search(self.text)) is not None:
            self.start = self.scanned = found.end()
        while self.start is not None and not self.sent and self.text[self.start : self.start + 1].isspace():
            self.start = self.scanned = self.start + 1  # the value's own text starts after the spacing
        if self.name is None:
            head = self.text[: self.start] if self.start is not None else self.text
            if (named := _NAME.search(head)) is not None:
                self.name = named.group(1)
        self._scan()
        if self.name is None or self.start is None or self.start >= len(self.text):
            return []
        deltas = [] if self.sent else [ToolCallDelta(self.index, self.id, self.name, "")]
        available = self.text[self.start : self.end if self.end is not None else len(self.text)]
        new, self.sent = available[self.sent :], len(available)
        return [*deltas, ToolCallDelta(self.index, self.id, self.name, new)] if new else deltas

    def _scan(self) -> None:
        """Find where the arguments value ends (an object, array, string or scalar)."""
        if self.start is None or self.end is not None:
            return
        for at in range(self.scanned, len(self.text)):
            char = self.text[at]
            if self.value_string:
                if self.value_escape:
                    self.value_escape = False
                elif char == "\\":
                    self.value_escape = True
                elif char == '"':
                    self.value_string = False
                    if self.value_depth == 0:
                        self.end = at + 1
                        return
            elif char == '"':
                self.value_string = True
            elif char in "{[":
                self.value_depth += 1
            elif char in "}]":
                self.value_depth -= 1
                if self.value_depth <= 0:
                    self.end = at + 1 if self.value_depth == 0 else at
                    return
            elif char == "," and self.value_depth == 0:
                self.end = at  # a scalar value ended
                return
        self.scanned = len(self.text)


class CallScanner:
    """Reads JSON text in which call objects stand at `depth` (1: the text is one call; 3: the generic
    format's `{"tool_calls": [...]}`), and reports calls and argument pieces as they are written."""

    def __init__(self, depth: int, first_index: int = 0) -> None:
        self.depth = depth
        self.first_index = first_index
        self._level = 0
        self._string = self._escape = False
        self._call: _Call | None = None
        self.calls: list[_Call] = []

    def feed(self, text: str) -> list[ToolCallDelta]:
        deltas: list[ToolCallDelta] = []
        piece_start = 0
        for at, char in enumerate(text):
            if self._string:
                if self._escape:
                    self._escape = False
                elif char == "\\":
                    self._escape = True
                elif char == '"':
                    self._string = False
                continue
            if char == '"':
                self._string = True
            elif char in "{[":
                self._level += 1
                if self._level == self.depth and char == "{":
                    self._call = _Call(self.first_index + len(self.calls))
                    self.calls.append(self._call)
                    piece_start = at
            elif char in "}]":
                if self._level == self.depth and self._call is not None:
                    deltas += self._call.feed(text[piece_start : at + 1])
                    self._call = None
                self._level -= 1
        if self._call is not None:
            deltas += self._call.feed(text[piece_start:])
        return deltas

    def arguments(self, index: int) -> str | None:
        """The complete argument text of call `index`, as streamed; None if it did not complete."""
        call = self.calls[index] if index < len(self.calls) else None
        if call is None or call.start is None or call.end is None:
            return None
        return call.text[call.start : call.end]
