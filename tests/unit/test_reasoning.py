"""Reasoning kept apart from the answer: each family's real markers, split wherever the stream splits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from radis_mlx.generation.harmony import HarmonyParser
from radis_mlx.generation.reasoning import (
    GEMMA4,
    HARMONY,
    MISTRAL,
    THINK,
    ThinkSplitter,
    detect_reasoning,
    starts_inside,
    template_switches,
)
from radis_mlx.generation.reasoning_stage import with_reasoning
from radis_mlx.generation.types import GenerationChunk, GenerationRequest, ReasoningOptions
from tests.support.e2e import THINK_TEMPLATE

# Each family's output as its models write it (the markers are several tokens on most tokenizers).
CASES = [
    (THINK, False, "<think>\nThe user greets.\n</think>\n\nHello!", "The user greets.\n", "Hello!"),
    (THINK, True, "Prompt opened it.\n</think>\n\nHi there", "Prompt opened it.\n", "Hi there"),
    (
        THINK,
        True,
        "<think>\nllama.cpp echoed the start</think>Answer",
        "llama.cpp echoed the start",
        "Answer",
    ),
    (MISTRAL, False, "[THINK]Let me see: 2+2.[/THINK]It is 4.", "Let me see: 2+2.", "It is 4."),
    (GEMMA4, False, "<|channel>thought\nplan<channel|>Done.", "plan", "Done."),
    (THINK, False, "No reasoning at all <thin", "", "No reasoning at all <thin"),
    (THINK, False, "cut short <think>still thinking", "still thinking", "cut short "),
]


def pieces(text: str, rng: random.Random) -> list[str]:
    out, at = [], 0
    while at < len(text):
        size = rng.randint(1, 4)
        out.append(text[at : at + size])
        at += size
    return out


@pytest.mark.parametrize(("fmt", "inside", "text", "reasoning", "content"), CASES)
def test_split_is_the_same_wherever_the_stream_splits(fmt, inside, text, reasoning, content):
    rng = random.Random(7)
    for _ in range(200):
        splitter = ThinkSplitter(fmt, inside)
        parts = [splitter.feed(piece) for piece in pieces(text, rng)] + [splitter.finish()]
        assert "".join(r for r, _ in parts) == reasoning
        assert "".join(c for _, c in parts) == content
        assert not any(fmt.start in c or fmt.end in c for _, c in parts)


HARMONY_CALL = (
    "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>'
)
HARMONY_ANSWER = (
    "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant"
    "<|channel|>final<|message|>Paris.<|return|>"
)
# The recipient in the role header, as gpt-oss templates render past calls.
HARMONY_ROLE = (
    "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.f"
    "<|channel|>commentary json<|message|>{}<|call|>"
)


@pytest.mark.parametrize(
    ("text", "reasoning", "content", "calls"),
    [
        (HARMONY_CALL, "Need the weather.", "", [("get_weather", '{"city": "Paris"}')]),
        (HARMONY_ANSWER, "Simple.", "Paris.", []),
        (HARMONY_ROLE, "x", "", [("f", "{}")]),
        ("A model that ignores harmony.", "", "A model that ignores harmony.", []),
        ("<|channel|>final<|message|>keeps <|other|> markup<|return|>", "", "keeps <|other|> markup", []),
    ],
)
def test_harmony_channels_wherever_the_stream_splits(text, reasoning, content, calls):
    rng = random.Random(3)
    for _ in range(200):
        parser = HarmonyParser()
        splits = [parser.feed(piece) for piece in pieces(text, rng)] + [parser.finish()]
        assert "".join(s.reasoning for s in splits) == reasoning
        assert "".join(s.content for s in splits) == content
        made = [call for s in splits for call in s.calls]
        assert [(c.name, c.arguments) for c in made] == calls
        deltas = [d for s in splits for d in s.deltas]
        assert "".join(d.arguments for d in deltas) == "".join(a for _, a in calls)  # streamed as it came


def test_formats_are_detected_from_templates_and_settings():
    assert detect_reasoning(THINK_TEMPLATE) == THINK
    assert detect_reasoning("{{ '<|start|>assistant<|channel|>final<|message|>' }}") == HARMONY
    assert detect_reasoning("{{ '[THINK]' }}") == MISTRAL
    assert detect_reasoning("{{ messages }}") is None
    assert detect_reasoning(THINK_TEMPLATE, "none") is None
    assert detect_reasoning(None, "auto", ("<r>", "</r>")).start == "<r>"


def test_a_template_that_opens_the_block_starts_inside_unless_switched_off():
    assert starts_inside(THINK_TEMPLATE, THINK, {})
    assert not starts_inside(THINK_TEMPLATE, THINK, {"enable_thinking": False})
    assert not starts_inside("{{ '<|im_start|>assistant\\n' }}", THINK, {})


def test_switches_map_each_control_onto_the_template_variables():
    assert template_switches(THINK, ReasoningOptions(effort="none")) == {
        "enable_thinking": False,
        "thinking": False,
    }
    assert template_switches(THINK, ReasoningOptions(effort="high"))["enable_thinking"] is True
    assert template_switches(HARMONY, ReasoningOptions(effort="minimal"))["reasoning_effort"] == "low"
    assert template_switches(THINK, ReasoningOptions()) == {}


class Scripted:
    """An engine that writes fixed pieces, one token each, and keeps every request it was given."""

    def __init__(self, script: list[str], then: list[str]) -> None:
        self.script, self.then, self.seen = script, then, []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.seen.append(request)
        script = self.script if len(self.seen) == 1 else self.then
        for index, piece in enumerate(script, start=1):
            last = index == len(script)
            yield GenerationChunk(piece, "stop" if last else None, 5, index if last else 0, tokens=1)


def collect(generate, request):
    async def run():
        return [chunk async for chunk in generate(request)]

    return asyncio.run(run())


def test_a_budget_that_runs_out_closes_the_reasoning_and_the_answer_follows():
    engine = Scripted(["a", " b", " c", " d", " e"], ["The", " answer"])
    reasoned = with_reasoning(engine.generate, THINK, THINK_TEMPLATE)
    request = GenerationRequest(messages=[], reasoning=ReasoningOptions(budget=3), max_tokens=50)
    chunks = collect(reasoned, request)
    assert "".join(c.reasoning for c in chunks) == "a b c"
    assert "".join(c.text for c in chunks) == "The answer"
    assert engine.seen[1].assistant_prefix == "a b c" + THINK.close  # the reasoning so far, then its end
    assert engine.seen[1].max_tokens == 47
    assert chunks[-1].completion_tokens == 3 + 2 and chunks[-1].reasoning_tokens == 3


def test_reasoning_off_closes_a_prompt_opened_block_at_once():
    engine = Scripted(["Hi"], [])
    reasoned = with_reasoning(engine.generate, THINK, THINK_TEMPLATE)
    chunks = collect(reasoned, GenerationRequest(messages=[], reasoning=ReasoningOptions(effort="none")))
    assert engine.seen[0].template_kwargs == {"enable_thinking": False, "thinking": False}
    assert engine.seen[0].assistant_prefix == ""  # the template honours the switch: nothing to close
    assert [c.text for c in chunks] == ["Hi"] and not any(c.reasoning for c in chunks)
    # A template without the switch still opens the block: the server closes it.
    always_open = "{{ '<|im_start|>assistant\\n<think>\\n' }}"
    engine = Scripted(["Hi"], [])
    collect(
        with_reasoning(engine.generate, THINK, always_open),
        GenerationRequest(messages=[], reasoning=ReasoningOptions(effort="none")),
    )
    assert engine.seen[0].assistant_prefix == THINK.close
