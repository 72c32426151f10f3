"""Reasoning ("thinking") kept apart from the answer, the same on every engine.

A model's ReasoningFormat comes from its chat template, or from models.toml `reasoning`: the
<think>…</think> families (Qwen3, DeepSeek-R1, GLM, MiniMax, Kimi), Mistral's [THINK]…[/THINK], Gemma 4's
<|channel>thought…<channel|>, and gpt-oss's harmony channels (harmony.py). A template that opens the block
in its generation prompt (QwQ, R1 distills, Qwen3 2507 thinking) makes the output start inside it:
`starts_inside` renders the template once per set of switches to know, as llama.cpp's autoparser and
mlx-lm's server do. `ThinkSplitter` turns a text stream into reasoning and content, holding back text that
may be the start of a marker (markers are matched on text: they are often several tokens).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from radis_mlx.generation.types import ReasoningFormat, ReasoningOptions

THINK = ReasoningFormat("think", "<think>", "</think>", "\n</think>\n\n")
MISTRAL = ReasoningFormat("mistral", "[THINK]", "[/THINK]", "[/THINK]")
GEMMA4 = ReasoningFormat("gemma4", "<|channel>thought", "<channel|>", "<channel|>")
HARMONY = ReasoningFormat(
    "harmony",
    "<|channel|>analysis<|message|>",
    "<|end|>",
    "<|end|><|start|>assistant<|channel|>final<|message|>",
    harmony=True,
)
FORMATS = {f.name: f for f in (THINK, MISTRAL, GEMMA4, HARMONY)}

# reasoning_effort in gpt-oss's words (its template writes "Reasoning: low|medium|high").
_HARMONY_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def detect_reasoning(template: str | None, setting: str = "auto", markers: tuple[str, str] | None = None):
    """The reasoning format a model's template implies (or models.toml names); None: no reasoning."""
    if setting == "none":
        return None
    if markers is not None:
        return ReasoningFormat("custom", markers[0], markers[1], markers[1])
    if setting != "auto":
        return FORMATS[setting]
    if not template:
        return None
    if "<|channel|>" in template:
        return HARMONY
    if "[THINK]" in template:
        return MISTRAL
    if "<|channel>" in template:
        return GEMMA4
    if "<think>" in template or "</think>" in template:
        return THINK
    return None


def template_switches(fmt: ReasoningFormat, options: ReasoningOptions) -> dict[str, Any]:
    """The chat-template variables that turn reasoning on or off and set its effort, in the names the
    families' templates read: enable_thinking (Qwen3, GLM, Gemma 4), thinking (DeepSeek V3.1, Kimi K2.5),
    reasoning_effort (gpt-oss). Unset options leave the template's default."""
    enabled = options.enabled
    if options.effort == "none":
        enabled = False
    elif options.effort is not None and enabled is None:
        enabled = True
    switches: dict[str, Any] = {}
    if enabled is not None:
        switches |= {"enable_thinking": enabled, "thinking": enabled}
    if fmt.harmony and options.effort in _HARMONY_EFFORT:
        switches["reasoning_effort"] = _HARMONY_EFFORT[options.effort]
    elif fmt.harmony and options.effort == "max":
        switches["reasoning_effort"] = "high"
    return switches


def reasoning_enabled(options: ReasoningOptions) -> bool | None:
    """Whether the request turned reasoning off (False), on (True), or left the model's default (None)."""
    if options.effort == "none":
        return False
    return options.enabled


def starts_inside(template: str | None, fmt: ReasoningFormat, switches: dict[str, Any]) -> bool:
    """Whether the template's generation prompt opens the reasoning block (the output starts inside it)."""
    if template is None or fmt.harmony:
        return False
    return _opens(template, fmt.start, fmt.end, json.dumps(switches, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _opens(template: str, start: str, end: str, switches: str) -> bool:
    from transformers.utils.chat_template_utils import render_jinja_template

    chat = [{"role": "user", "content": "\x00"}]
    try:
        rendered = render_jinja_template(
            [chat], chat_template=template, add_generation_prompt=True, **json.loads(switches)
        )
    except Exception:  # the template's own raise_exception(), or features we cannot render here
        return False
    while isinstance(rendered, tuple | list):  # (rendered conversations, generation indices)
        rendered = rendered[0] if rendered else ""
    prompt = rendered[rendered.rfind("\x00") + 1 :] if isinstance(rendered, str) else ""
    return prompt.rfind(start) > prompt.rfind(end) if start in prompt else False


class ThinkSplitter:
    """Splits a model's text into reasoning and answer as it streams, markers removed.

    Text that may be the beginning of the next marker is held back until it is known not to be; leading
    whitespace after a marker is dropped, as llama.cpp's and vLLM's parsers do.
    """

    def __init__(self, fmt: ReasoningFormat, inside: bool) -> None:
        self.fmt = fmt
        self.inside = inside
        self.seen_end = False
        self._buffer = ""
        self._trim = True  # drop whitespace at the start of a section
        self._echoed_start = inside  # llama.cpp may echo a prompt-opened start marker: drop it once

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning, content) that this text completes."""
        self._buffer += text
        reasoning: list[str] = []
        content: list[str] = []
        while self._buffer:
            if self._echoed_start:
                stripped = self._buffer.lstrip()
                if self.fmt.start.startswith(stripped):
                    break  # maybe the echoed marker: wait for more
                if stripped.startswith(self.fmt.start):
                    self._buffer = stripped[len(self.fmt.start) :]
                self._echoed_start = False
                continue
            marker = self.fmt.end if self.inside else self.fmt.start
            at = self._buffer.find(marker)
            if at < 0:
                keep = partial_marker(self._buffer, marker)
                self._emit(self._buffer[: len(self._buffer) - keep], reasoning, content)
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            self._emit(self._buffer[:at], reasoning, content)
            self._buffer = self._buffer[at + len(marker) :]
            self.seen_end = self.seen_end or self.inside
            self.inside, self._trim = not self.inside, True
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        """What is still held back, in the section it was in."""
        reasoning: list[str] = []
        content: list[str] = []
        self._emit(self._buffer, reasoning, content)
        self._buffer = ""
        return "".join(reasoning), "".join(content)

    def _emit(self, text: str, reasoning: list[str], content: list[str]) -> None:
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        (reasoning if self.inside else content).append(text)


def partial_marker(text: str, marker: str) -> int:
    """Length of the longest end of `text` that may be the start of `marker`."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
