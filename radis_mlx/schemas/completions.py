"""POST /v1/completions, named and ordered as in the OpenAI reference."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import GenerationRequest, TokenLogprob
from radis_mlx.schemas.common import (
    MAX_GENERATIONS,
    ChoiceCount,
    CompletionUsage,
    MaxTokens,
    SamplingFields,
    StreamOptions,
    TtlSeconds,
    User,
    output_grammar,
    split_inputs,
)

# OpenAI accepts a string, a list of strings, a token list, or a list of token lists; msgspec
# allows one array type per union, so the element type is a union checked in prompts().
Prompt = str | list[str | int | list[int]]


class CompletionRequest(SamplingFields, kw_only=True):
    model: str
    prompt: Prompt
    best_of: int | None = None
    echo: bool = False
    logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    max_tokens: MaxTokens | None = 16
    n: ChoiceCount = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Fill-in-the-middle: rendered with the model's FIM template in api/completions.py (model known there).
    suffix: str | None = None
    user: User | None = None
    # Extension (LM Studio): seconds this model may stay loaded while idle, from this request on.
    ttl: TtlSeconds | None = None

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text, or token ids; at most MAX_GENERATIONS generations (prompts × n)."""
        prompts = split_inputs(self.prompt, "prompt", allow_empty_text=True)
        if len(prompts) * self.n > MAX_GENERATIONS:
            raise InvalidRequestError(
                f"{len(prompts)} prompts × n = {self.n} would be {len(prompts) * self.n} completions; "
                f"a request may ask for at most {MAX_GENERATIONS}",
                param="prompt",
            )
        return prompts

    def to_generation(self, prompt: str | list[int], defaults: SamplingDefaults) -> GenerationRequest:
        """The engine's view of this request for one prompt."""
        if self.logprobs is not None and self.echo:
            raise InvalidRequestError("logprobs of echoed prompt tokens are not supported", param="echo")
        # best_of == n returns every candidate: the same as n alone. Ranking candidates is not implemented.
        if self.best_of not in (None, 1, self.n):
            raise InvalidRequestError(
                f"best_of must equal n ({self.n}): choosing the best of several candidates is not supported",
                param="best_of",
            )
        return GenerationRequest(
            prompt=prompt,
            max_tokens=self.max_tokens or defaults.max_tokens,
            stop=self.stop_list(defaults),
            sampling=self.to_sampling_params(defaults),
            logprobs=self.logprobs,
            output_grammar=output_grammar(self.grammar),
        )


class Logprobs(Struct):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]

    @classmethod
    def of(cls, entries: list[TokenLogprob] | None, offset: int = 0) -> Logprobs | None:
        """The legacy logprobs object; text offsets count characters from `offset`."""
        if entries is None:
            return None
        offsets = []
        for entry in entries:
            offsets.append(offset)
            offset += len(entry.token)
        return cls(
            [e.token for e in entries],
            [e.logprob for e in entries],
            [{t.token: t.logprob for t in e.top} for e in entries],
            offsets,
        )


class CompletionChoice(Struct):
    text: str
    index: int
    logprobs: Logprobs | None = None
    finish_reason: str | None = None


class Completion(Struct):
    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str | None = None
    usage: CompletionUsage | UnsetType = UNSET
