"""A request's prompt as an mlx-lm tokenizer sees it: the one preparation every MLX engine shares.

The single-process engine (llm.py) and rank 0 of a distributed group (distributed/leader.py) both
turn a GenerationRequest into prompt tokens, check token ids and build the grammar mask here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.chat_template import template_messages, template_tools
from radis_mlx.generation.types import GenerationRequest, check_token_ids


def render_tokens(tokenizer: Any, request: GenerationRequest, template: str | None) -> list[int]:
    """A chat request's prompt tokens through an mlx-lm tokenizer (its own template unless given one)."""
    text = _render(
        tokenizer, request, template, template_messages(request.messages or [], object_arguments=True)
    )
    return list(tokenizer.encode(text + request.assistant_prefix, add_special_tokens=False))


def message_boundaries(
    tokenizer: Any, request: GenerationRequest, template: str | None, prompt: list[int]
) -> list[tuple[int, str]]:
    """Where the prompt's head ends, as (token count, kind): "system" after the system prompt and tools (what
    other conversations share), "user" after the last message, before the generation prompt (what the next
    turn shares; also what a client that edits its last message falls back to, as the turn before)."""
    messages = template_messages(request.messages or [], object_arguments=True)
    heads = []
    systems = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
    if systems or request.tools:  # with an empty user turn: some templates print the system part only then
        heads.append(([*messages[:systems], {"role": "user", "content": ""}], "system"))
    if len(messages) > 1:
        heads.append((messages[:-1], "user"))
    bounds = []
    for head, kind in heads:
        try:
            text = _render(tokenizer, request, template, head, generation_prompt=False)
        except InvalidRequestError:  # a template that refuses a partial conversation: no checkpoint there
            continue
        shared = common_prefix(list(tokenizer.encode(text, add_special_tokens=False)), prompt)
        if 0 < shared < len(prompt) - 1:
            bounds.append((shared, kind))
    return sorted(set(bounds))


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _render(
    tokenizer: Any,
    request: GenerationRequest,
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    generation_prompt: bool = True,
) -> str:
    options: dict[str, Any] = {
        **request.template_kwargs,
        "add_generation_prompt": generation_prompt,
        "tokenize": False,
    }
    if request.tools:
        options["tools"] = template_tools(request.tools)
    own = tokenizer.chat_template
    if template is not None and template not in (own.values() if isinstance(own, dict) else [own]):
        options["chat_template"] = template  # an override; else transformers picks among the model's own
    try:
        if getattr(tokenizer, "_chat_template", None) is not None:  # mlx-lm's own renderer for the model
            text = tokenizer.apply_chat_template(messages, **options)
        else:
            # The template itself, not mlx-lm's wrapper: the wrapper sets enable_thinking to whether the
            # vocabulary has <think>, overriding the template's own default (llama.cpp keeps it, and so
            # does generation/reasoning.starts_inside).
            inner = getattr(tokenizer, "_tokenizer", tokenizer)
            text = inner.apply_chat_template(messages, return_dict=False, **options)
    except (TemplateError, TypeError, ValueError) as exc:  # also the template's own raise_exception()
        raise InvalidRequestError(
            f"the chat template rejected these messages: {exc}", param="messages"
        ) from exc
    return str(text)


def prompt_tokens(tokenizer: Any, request: GenerationRequest, template: str | None) -> list[int]:
    """The prompt's tokens: templated messages, an encoded string, or checked token ids."""
    if request.messages is not None:
        return render_tokens(tokenizer, request, template)
    if isinstance(request.prompt, str):
        return list(tokenizer.encode(request.prompt))
    tokens = list(request.prompt or [])
    check_token_ids(tokens, len(tokenizer.vocab), "prompt")
    return tokens


def prompt_param(request: GenerationRequest) -> str:
    """The request field a prompt-length error names."""
    return "messages" if request.messages is not None else "prompt"


class GuidanceTokenizer:
    """llguidance's view of an mlx-lm tokenizer, built on first use (it walks the whole vocabulary)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._built: Any = None

    def get(self) -> Any:
        if self._built is None:
            import llguidance.hf

            self._built = llguidance.hf.from_tokenizer(self._tokenizer._tokenizer)
        return self._built


def trained_context(folder: Path) -> int:
    """The context length an MLX model folder was trained for (config.json)."""
    config = json.loads((folder / "config.json").read_text())
    return int(config.get("max_position_embeddings") or config.get("max_seq_len") or 4096)


def keep_leading_space(tokenizer: Any) -> None:
    """Stream ' Paris' after 'The capital of France is', as OpenAI and llama.cpp do.

    mlx-lm's streaming detokenizers drop the first token's leading space (right for a chat
    reply shown alone, wrong for a completion that continues its prompt).
    """
    detokenizer = tokenizer._detokenizer  # per-request copies are made from this one
    if hasattr(detokenizer, "trim_space"):
        detokenizer.trim_space = False
    if hasattr(detokenizer, "_maybe_trim_space"):
        detokenizer._maybe_trim_space = lambda text: text
