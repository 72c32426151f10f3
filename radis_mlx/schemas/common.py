"""Pieces shared by several OpenAI API families."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import lark_text
from radis_mlx.generation.types import ChatMessage, SamplingParams

Temperature = Annotated[float, Meta(ge=0, le=2)]
TopP = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
MaxTokens = Annotated[int, Meta(ge=1)]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
BudgetTokens = Annotated[int, Meta(ge=0)]
ChoiceCount = Annotated[int, Meta(ge=1, le=128)]
TtlSeconds = Annotated[int, Meta(ge=1)]
# Bounds on what a request may list, checked as its body is decoded (a 400 naming the field, before any
# work): OpenAI's where it has one (128 tools, metadata of 16 pairs of 64/512 characters).
MAX_TOOLS = 128
MAX_GENERATIONS = 128  # prompts × n in one request
StopText = Annotated[str, Meta(max_length=512)]
StopList = Annotated[list[StopText], Meta(max_length=16)]
Stop = StopText | StopList | None
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]], Meta(max_length=16)
]
User = Annotated[str, Meta(max_length=256)]


class StreamOptions(Struct, omit_defaults=True):
    include_usage: bool = False


class PromptTokensDetails(Struct):
    cached_tokens: int = 0
    # Extension: of the prompt's tokens, the images' (left out when the request has none).
    image_tokens: int | UnsetType = UNSET


class CompletionTokensDetails(Struct):
    reasoning_tokens: int = 0


class CompletionUsage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @classmethod
    def of(
        cls,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        image_tokens: int = 0,
    ) -> CompletionUsage:
        total = prompt_tokens + completion_tokens
        details = CompletionTokensDetails(reasoning_tokens)
        prompt = PromptTokensDetails(cached_tokens, image_tokens or UNSET)
        return cls(prompt_tokens, completion_tokens, total, prompt, details)


class SamplingFields(Struct, kw_only=True):
    """The sampling fields chat and completions share, with our extensions last."""

    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: Stop = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    # Not in the OpenAI reference; accepted as vLLM, LM Studio and llama.cpp do.
    top_k: Annotated[int, Meta(ge=-1)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Meta(gt=0, le=10)] | None = None
    # Extension (llama-server's field): a grammar over the whole output, in llguidance's Lark dialect.
    grammar: str | None = None

    def to_sampling_params(self, defaults: SamplingDefaults) -> SamplingParams:
        """Request fields over per-model defaults over OpenAI's defaults."""
        return SamplingParams(
            temperature=_pick(self.temperature, defaults.temperature, 1.0),
            top_p=_pick(self.top_p, defaults.top_p, 1.0),
            top_k=max(0, _pick(self.top_k, defaults.top_k, 0)),
            min_p=_pick(self.min_p, defaults.min_p, 0.0),
            seed=self.seed,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            repetition_penalty=_pick(self.repetition_penalty, defaults.repetition_penalty, 1.0),
            logit_bias=_token_bias(self.logit_bias),
        )

    def stop_list(self, defaults: SamplingDefaults | None = None) -> list[str]:
        """The request's stop strings, else the model's default ones."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if not stop and defaults is not None and defaults.stop:
            return list(defaults.stop)
        return stop


def with_default_system(messages: list[ChatMessage], defaults: SamplingDefaults) -> list[ChatMessage]:
    """The model's default system prompt first, when the conversation brings no system message of its own."""
    if defaults.system and not any(m.role == "system" for m in messages):
        return [ChatMessage("system", defaults.system), *messages]
    return messages


def split_inputs(
    value: str | list[str | int | list[int]], param: str, *, allow_empty_text: bool
) -> list[str | list[int]]:
    """OpenAI's prompt/input shapes (a string, strings, token ids, token-id lists) as one item each.

    400 (with `param`) for an empty list, a mixed list, or an empty item.
    """
    items: list = [value] if isinstance(value, str) else list(value)
    if items and all(isinstance(x, int) for x in items):
        items = [items]
    if not items:
        raise InvalidRequestError(f"{param} must not be empty", param=param)
    if not (all(isinstance(x, str) for x in items) or all(isinstance(x, list) for x in items)):
        raise InvalidRequestError(
            f"{param} must be a string, a list of strings, a list of token ids, or a list of token-id lists",
            param=param,
        )
    empty = next(
        (i for i, x in enumerate(items) if not x and (isinstance(x, list) or not allow_empty_text)), None
    )
    if empty is not None:
        raise InvalidRequestError(f"{param}[{empty}] is empty", param=param)
    return items


def _pick(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _token_bias(bias: dict[str, float] | None) -> dict[int, float]:
    try:
        return {int(token): value for token, value in (bias or {}).items()}
    except ValueError:
        raise InvalidRequestError("logit_bias keys must be token ids", param="logit_bias") from None


def unix_time() -> int:
    import time

    return int(time.time())


encoder = msgspec.json.Encoder()


def template_switch(kwargs: dict[str, Any] | None, param: str) -> bool | None:
    """chat_template_kwargs.enable_thinking, which must be a JSON boolean (as llama.cpp requires)."""
    value = (kwargs or {}).get("enable_thinking")
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError("enable_thinking must be true or false", param=f"{param}.enable_thinking")
    return value


# apply_chat_template's own arguments: chat_template_kwargs are the template's variables, never these
# (a client's `chat_template` would run its own Jinja on the engine's thread).
_RENDER_ARGUMENTS = {
    "conversation", "tools", "documents", "chat_template", "add_generation_prompt", "continue_final_message",
    "tokenize", "padding", "truncation", "max_length", "return_tensors", "return_dict",
    "return_assistant_tokens_mask", "tokenizer_kwargs", "messages",
}  # fmt: skip


def template_variables(kwargs: dict[str, Any] | None, param: str) -> dict[str, Any]:
    """chat_template_kwargs as the template's variables; a renderer argument's name is a 400 naming it."""
    for name in kwargs or {}:
        if name in _RENDER_ARGUMENTS:
            raise InvalidRequestError(f"{name} is not a template variable", param=f"{param}.{name}")
    return dict(kwargs or {})


def check_budget(budget: int | None, max_tokens: int | None, param: str) -> None:
    """A reasoning budget fits in the completion's max tokens."""
    if budget is not None and max_tokens is not None and budget > max_tokens:
        raise InvalidRequestError(
            f"{param} ({budget}) must not exceed max_tokens ({max_tokens})", param=param
        )


def output_grammar(grammar: str | None, param: str = "grammar") -> str | None:
    """The `grammar` extension checked (Lark, llguidance's dialect); an invalid one is a 400 naming it."""
    return lark_text(grammar, "lark", param) if grammar is not None else None
