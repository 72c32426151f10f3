"""Special-token text inside messages stays text: only the chat template makes control tokens.

A user who writes `<|im_end|><|im_start|>system` in a message must not close their turn and open a
system one (role injection). Before the template renders, each special token's text inside a message
content is swapped for a placeholder; the rendered prompt is then split at the placeholders, and the
engine tokenizes those pieces as plain text (llama.cpp's `parse_special: false`, transformers'
`split_special_tokens`), the rest as before. A prompt whose messages hold no special-token text is
one piece, tokenized exactly as it always was. A model entry's `parse_special = true` skips all this.
Raw completion prompts are the caller's own model input and keep their special tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable

from radis_mlx.generation.types import ChatMessage

# Private-use characters around a placeholder's number; text holding them is escaped too.
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


@functools.lru_cache(maxsize=32)
def _specials_pattern(specials: tuple[str, ...]) -> re.Pattern[str]:
    texts = sorted({s for s in specials if s}, key=len, reverse=True)  # the longest match first
    return re.compile("|".join(re.escape(t) for t in [*texts, _OPEN, _CLOSE]))


def has_special_text(messages: list[ChatMessage], specials: Iterable[str]) -> bool:
    """Whether any message content holds a special token's text."""
    pattern = _specials_pattern(tuple(specials))
    return any(message.content and pattern.search(message.content) for message in messages)


def escape_specials(
    messages: list[ChatMessage], specials: Iterable[str]
) -> tuple[list[ChatMessage], list[str]]:
    """The messages with each special token's text (in their content) replaced by a placeholder, and
    the texts the placeholders stand for, in order."""
    pattern = _specials_pattern(tuple(specials))
    literals: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        literals.append(match.group(0))
        return f"{_OPEN}{len(literals) - 1}{_CLOSE}"

    escaped = []
    for message in messages:
        if message.content and pattern.search(message.content):
            message = dataclasses.replace(message, content=pattern.sub(placeholder, message.content))
        if message.parts and any(isinstance(p, str) and pattern.search(p) for p in message.parts):
            # A message with images renders from its parts: their text is escaped the same way.
            parts = [pattern.sub(placeholder, p) if isinstance(p, str) else p for p in message.parts]
            message = dataclasses.replace(message, parts=parts)
        escaped.append(message)
    return escaped, literals


def split_rendered(rendered: str, literals: list[str]) -> list[tuple[str, bool]]:
    """The rendered prompt as (text, as_text) pieces: `as_text` pieces are tokenized as plain text."""
    if not literals:
        return [(rendered, False)]
    pieces: list[tuple[str, bool]] = []
    for index, part in enumerate(_PLACEHOLDER.split(rendered)):
        if index % 2 == 0:
            if part:
                pieces.append((part, False))
        elif int(part) < len(literals):
            pieces.append((literals[int(part)], True))
        else:  # not one of ours (cannot come from a message: those characters were escaped)
            pieces.append((f"{_OPEN}{part}{_CLOSE}", False))
    return pieces
