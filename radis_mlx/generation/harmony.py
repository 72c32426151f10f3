"""gpt-oss's harmony format read as it streams: analysis is reasoning, final is the answer, calls are calls.

After the prompt's `<|start|>assistant` the model writes messages
`<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>json]<|message|>BODY` ended by `<|end|>`, `<|call|>` or
`<|return|>`, each further one opened by `<|start|>assistant[ to=RECIPIENT]`. The recipient may stand in
the role header or the channel header (both occur; openai/harmony docs/format.md, llama.cpp's parser).
A body addressed `to=functions.NAME` is that function's JSON arguments, streamed as they come; commentary
without a recipient is a preamble the user sees, so it is answer text, as llama.cpp and vLLM treat it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from radis_mlx.generation.reasoning import partial_marker
from radis_mlx.generation.types import ToolCall, ToolCallDelta

_MARKERS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|return|>", "<|constrain|>")
_ENDS = ("<|end|>", "<|call|>", "<|return|>", "<|start|>")
_RECIPIENT = re.compile(r"to=functions\.([^\s<]+)")
_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)")
_MAX_HEADER = 512


@dataclass
class Split:
    """What a piece of model text turned out to be."""

    reasoning: str = ""
    content: str = ""
    deltas: list[ToolCallDelta] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)


class HarmonyParser:
    """Incremental: feed() text as it comes, finish() at the end; markers never reach the output."""

    def __init__(self) -> None:
        self._buffer = ""
        self._in_header = True  # waiting for a header's <|message|>
        self._started = False  # a header was seen (before that, text that is no header is a plain answer)
        self._channel = "final"
        self._call: ToolCallDelta | None = None  # the call whose arguments the body is
        self._arguments: list[str] = []
        self.calls = 0

    @property
    def in_reasoning(self) -> bool:
        """Inside an analysis message's body."""
        return not self._in_header and self._call is None and self._channel == "analysis"

    def feed(self, text: str) -> Split:
        self._buffer += text
        out = Split()
        while self._buffer and (self._header_step() if self._in_header else self._body_step(out)):
            pass
        return out

    def finish(self) -> Split:
        """The end of the output: what was held back, and a call cut short ends as written."""
        out = Split()
        if not self._in_header:
            self._body(self._buffer, out)
        self._buffer = ""
        self._end_body(out)
        return out

    def _header_step(self) -> bool:
        stripped = self._buffer.lstrip()
        if not self._started and stripped and not stripped.startswith("<|") and not "<|".startswith(stripped):
            self._in_header = False  # no harmony at all: the model answered in plain text
            return True
        at = self._buffer.find("<|message|>")
        if at < 0:
            if len(self._buffer) > _MAX_HEADER:  # no header after all: keep the text as the answer
                self._in_header = False
                return True
            return False
        self._open_body(self._buffer[:at])
        self._buffer = self._buffer[at + len("<|message|>") :]
        return True

    def _body_step(self, out: Split) -> bool:
        at = self._buffer.find("<|")
        if at < 0:
            keep = partial_marker(self._buffer, "<|")
            self._body(self._buffer[: len(self._buffer) - keep], out)
            self._buffer = self._buffer[len(self._buffer) - keep :]
            return False
        self._body(self._buffer[:at], out)
        self._buffer = self._buffer[at:]
        marker = next((m for m in _MARKERS if self._buffer.startswith(m)), None)
        if marker is None:
            if any(m.startswith(self._buffer) for m in _MARKERS):
                return False  # a marker still arriving
            self._body("<|", out)  # not a marker of ours: plain text
            self._buffer = self._buffer[2:]
            return True
        self._buffer = self._buffer[len(marker) :]
        if marker in _ENDS:  # the next header (the role header may name the recipient) follows
            self._end_body(out)
            self._in_header = True
        else:
            self._body(marker, out)
        return True

    def _open_body(self, header: str) -> None:
        self._started, self._in_header = True, False
        channel = _CHANNEL.search(header)
        self._channel = channel.group(1) if channel else "final"
        recipient = _RECIPIENT.search(header)
        if recipient is not None:
            self._call = ToolCallDelta(self.calls, f"call_{uuid.uuid4().hex[:24]}", recipient.group(1), "")
            self._arguments = []

    def _body(self, text: str, out: Split) -> None:
        if not text:
            return
        if self._call is not None:
            if not self._arguments:
                out.deltas.append(self._call)
            self._arguments.append(text)
            out.deltas.append(ToolCallDelta(self._call.index, self._call.id, self._call.name, text))
        elif self._channel == "analysis":
            out.reasoning += text
        else:
            out.content += text

    def _end_body(self, out: Split) -> None:
        if self._call is not None:
            if not self._arguments:
                out.deltas.append(self._call)
            out.calls.append(ToolCall(self._call.id, self._call.name, "".join(self._arguments) or "{}"))
            self.calls += 1
        self._call, self._arguments = None, []
        self._started = True
