"""A Response's output as it streams: items opened, filled and closed as the reference orders the events.

reasoning (summary part → summary text deltas → done) → message (content part → text deltas → done) →
function calls (argument deltas) or custom tool calls (input deltas). One item is open at a time; every
event carries the next sequence number. The finished items are the response's `output`.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import msgspec

from radis_mlx.api.signing import ReasoningSeal
from radis_mlx.api.sse import named_event
from radis_mlx.generation.types import TokenLogprob, ToolCall, ToolCallDelta
from radis_mlx.schemas.response import Logprob, OutputItem, OutputMessage, StreamEvent
from radis_mlx.schemas.response_items import (
    CustomToolCall,
    FunctionCall,
    OutputText,
    ReasoningItem,
    SummaryText,
)


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class OutputShape:
    """What the request asked its output to carry."""

    seal: ReasoningSeal
    encrypted: bool  # include reasoning.encrypted_content
    logprobs: bool  # include message.output_text.logprobs (or top_logprobs)
    custom_tools: set[str] = field(default_factory=set)

    def reasoning(self, text: str, item: str | None = None, status: str = "completed") -> ReasoningItem:
        return ReasoningItem(
            id=item or item_id("rs"),
            summary=[SummaryText(text)],
            encrypted_content=self.seal.seal(text) if self.encrypted else msgspec.UNSET,
            status=status,  # type: ignore[arg-type]
        )

    def call(self, call: ToolCall, item: str | None = None) -> FunctionCall | CustomToolCall:
        """A finished call as its output item: custom tools' calls carry their input text."""
        if call.name in self.custom_tools:
            return CustomToolCall(call.id, call.name, custom_input(call.arguments), id=item or item_id("ctc"))
        return FunctionCall(call.id, call.name, call.arguments, id=item or item_id("fc"))

    def message(self, text: str, logprobs: list[TokenLogprob] | None, cut: bool) -> OutputMessage:
        part = OutputText(text, logprobs=Logprob.of(logprobs) if self.logprobs else msgspec.UNSET)
        return OutputMessage(item_id("msg"), [part], status="incomplete" if cut else "completed")


def custom_input(arguments: str) -> str:
    """A custom tool's input out of the function-shaped arguments it was offered with ({"input": ...})."""
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments
    return str(value["input"]) if isinstance(value, dict) and "input" in value else arguments


def output_items(
    shape: OutputShape,
    reasoning: str,
    text: str,
    calls: list[ToolCall],
    cut: bool,
    logprobs: list[TokenLogprob] | None = None,
) -> list[OutputItem]:
    """A finished reply's items: reasoning, the message (also when there is nothing else), the calls."""
    items: list[OutputItem] = [shape.reasoning(reasoning)] if reasoning else []
    if text or not calls:
        items.append(shape.message(text, logprobs, cut))
    return items + [shape.call(call) for call in calls]


class ResponseEvents:
    """The event sequence of one streamed response."""

    def __init__(self, shape: OutputShape) -> None:
        self.shape = shape
        self.sequence = itertools.count()
        self.items: list[OutputItem] = []
        self.open: str | None = None  # "reasoning" | "message" | a call id
        self.open_id = ""
        self.parts: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.calls: list[ToolCall] = []
        self.streamed: dict[str, str] = {}  # call id → item id, for calls that came as deltas
        self._open_name = ""

    def emit(self, kind: str, **fields: object) -> bytes:
        event = StreamEvent(type=kind, sequence_number=next(self.sequence), **fields)  # type: ignore[arg-type]
        return named_event(kind, event)

    def _where(self) -> dict[str, object]:
        return {"item_id": self.open_id, "output_index": len(self.items)}

    def here(self, kind: str, **fields: object) -> bytes:
        """An event about the open item (its id and place come with it)."""
        return self.emit(kind, **fields, **self._where())

    def _added(self, item: OutputItem) -> bytes:
        return self.emit("response.output_item.added", output_index=len(self.items), item=item)

    def _kind(self, name: str) -> str:
        return "custom_tool_call_input" if name in self.shape.custom_tools else "function_call_arguments"

    def reasoning(self, text: str) -> list[bytes]:
        events = []
        if self.open != "reasoning":
            events = self.close()
            self.open, self.open_id = "reasoning", item_id("rs")
            added = ReasoningItem(id=self.open_id, summary=[], status="in_progress")
            events.append(self.emit("response.output_item.added", output_index=len(self.items), item=added))
            part = SummaryText("")
            events.append(
                self.emit(
                    "response.reasoning_summary_part.added", summary_index=0, part=part, **self._where()
                )
            )
        self.parts.append(text)
        return [
            *events,
            self.emit("response.reasoning_summary_text.delta", summary_index=0, delta=text, **self._where()),
        ]

    def text(self, text: str, logprobs: list[TokenLogprob] | None) -> list[bytes]:
        events = []
        if self.open != "message":
            events = self.close()
            self.open, self.open_id = "message", item_id("msg")
            added = OutputMessage(self.open_id, [], status="in_progress")
            events.append(self.emit("response.output_item.added", output_index=len(self.items), item=added))
            events.append(
                self.emit(
                    "response.content_part.added", content_index=0, part=OutputText(""), **self._where()
                )
            )
        self.parts.append(text)
        self.logprobs += logprobs or []
        scored = Logprob.of(logprobs) if self.shape.logprobs else []
        return [
            *events,
            self.emit(
                "response.output_text.delta", content_index=0, delta=text, logprobs=scored, **self._where()
            ),
        ]

    def call_delta(self, delta: ToolCallDelta) -> list[bytes]:
        events = []
        if self.open != delta.id:
            events = self.close()
            self.open, self.open_id = (
                delta.id,
                item_id("ctc" if delta.name in self.shape.custom_tools else "fc"),
            )
            self.streamed[delta.id] = self.open_id
            self._open_name = delta.name
            started = self.shape.call(ToolCall(delta.id, delta.name, ""), self.open_id)
            started = msgspec.structs.replace(started, status="in_progress")
            events.append(self.emit("response.output_item.added", output_index=len(self.items), item=started))
        if not delta.arguments:
            return events
        self.parts.append(delta.arguments)
        kind = (
            "custom_tool_call_input" if delta.name in self.shape.custom_tools else "function_call_arguments"
        )
        return [*events, self.emit(f"response.{kind}.delta", delta=delta.arguments, **self._where())]

    def call(self, call: ToolCall) -> list[bytes]:
        if call.id not in self.streamed:
            events = self.call_delta(ToolCallDelta(len(self.calls), call.id, call.name, ""))
            self.parts = [
                custom_input(call.arguments) if call.name in self.shape.custom_tools else call.arguments
            ]
            kind = (
                "custom_tool_call_input"
                if call.name in self.shape.custom_tools
                else "function_call_arguments"
            )
            events.append(self.emit(f"response.{kind}.delta", delta=self.parts[0], **self._where()))
        else:
            events = []
        self.calls.append(call)
        return events + self._close_call(call)

    def _close_call(self, call: ToolCall, status: str = "completed") -> list[bytes]:
        where, item = self._where(), self.shape.call(call, self.open_id)
        item = msgspec.structs.replace(item, status=status)
        if isinstance(item, CustomToolCall):
            done = self.here("response.custom_tool_call_input.done", input=item.input)
        else:
            done = self.emit(
                "response.function_call_arguments.done", arguments=call.arguments, name=call.name, **where
            )
        self.items.append(item)
        self.open, self.parts = None, []
        return [done, self.emit("response.output_item.done", output_index=where["output_index"], item=item)]

    def close(self, cut: bool = False) -> list[bytes]:
        """Close the open item: reasoning, the message, or a call cut short (others close on completion)."""
        where, text = self._where(), "".join(self.parts)
        if self.open == "reasoning":
            item: OutputItem = self.shape.reasoning(text, self.open_id)
            events = [
                self.emit("response.reasoning_summary_text.done", summary_index=0, text=text, **where),
                self.emit(
                    "response.reasoning_summary_part.done", summary_index=0, part=SummaryText(text), **where
                ),
            ]
        elif self.open is not None and self.open not in ("message",) and self.open in self.streamed:
            # A call cut short (max tokens): what was written of it, closed as incomplete.
            return self._close_call(ToolCall(self.open, self._open_name, text), "incomplete")
        elif self.open == "message":
            item = self.shape.message(text, self.logprobs, cut)
            item = msgspec.structs.replace(item, id=self.open_id)
            scored = Logprob.of(self.logprobs) if self.shape.logprobs else []
            events = [
                self.here("response.output_text.done", content_index=0, text=text, logprobs=scored),
                self.here("response.content_part.done", content_index=0, part=item.content[0]),
            ]
        else:
            return []
        self.items.append(item)
        self.open, self.parts, self.logprobs = None, [], []
        return [
            *events,
            self.emit("response.output_item.done", output_index=where["output_index"], item=item),
        ]
