"""The templates a model's files carry: its chat template and the FIM template its vocabulary implies.

Read once per model at load, so every engine serving a model sees the same ones. FIM detection mirrors
llama.cpp's FIM token names (src/llama-vocab.cpp, special_fim_pre_id and friends) and renders each
family in the order it was trained on.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Container
from pathlib import Path

from radis_mlx.store.gguf import gguf_metadata, is_gguf


def read_chat_template(path: Path) -> str | None:
    """The chat template shipped with a model (GGUF metadata, or an MLX folder's files); None if none."""
    try:
        if is_gguf(path):
            template = gguf_metadata(path).get("tokenizer.chat_template")
            return template if isinstance(template, str) else None
        if (path / "chat_template.jinja").is_file():
            return (path / "chat_template.jinja").read_text()
        if (path / "chat_template.json").is_file():  # a vision model's processor template
            template = json.loads((path / "chat_template.json").read_text()).get("chat_template")
            if isinstance(template, str):
                return template
        config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError, struct.error):
        return None
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the one transformers renders tools with
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("tool_use", named.get("default"))
    return template if isinstance(template, str) else None


# (prefix, suffix, middle) token texts, as llama.cpp looks for them; the order below is the search order.
_PSM_FAMILIES = [
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, CodeGemma
    ("<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SmolLM, Granite
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder
    ("<|code_prefix|>", "<|code_suffix|>", "<|code_middle|>"),  # GLM-4.5
    ("<|prefix|>", "<|suffix|>", "<|middle|>"),  # Falcon-H1-Tiny-Coder
    ("<PRE>", "<SUF>", "<MID>"),
]
# CodeLlama's tokens carry SentencePiece's space: " <PRE> {prefix} <SUF>{suffix} <MID>" as Meta trains it.
_CODELLAMA = ("▁<PRE>", "▁<SUF>", "▁<MID>")
_CODELLAMA_TEMPLATE = "▁<PRE> {prefix}▁<SUF>{suffix}▁<MID>"
# Codestral/Mistral: suffix first, no middle token (mistral-common's FIM request). Not in llama.cpp's list.
_MISTRAL = ("[SUFFIX]", "[PREFIX]")
_MISTRAL_TEMPLATE = "[SUFFIX]{suffix}[PREFIX]{prefix}"

FIM_TOKENS = frozenset([t for family in _PSM_FAMILIES for t in family] + list(_CODELLAMA) + list(_MISTRAL))
_TOKENS_KEY = "tokenizer.ggml.tokens"


def detect_fim_template(vocab: Container[str]) -> str | None:
    """The FIM template a vocabulary's tokens imply; None when it has no complete FIM token set."""
    if all(t in vocab for t in _CODELLAMA):
        return _CODELLAMA_TEMPLATE
    for prefix, suffix, middle in _PSM_FAMILIES:
        if prefix in vocab and suffix in vocab and middle in vocab:
            return f"{prefix}{{prefix}}{suffix}{{suffix}}{middle}"
    if all(t in vocab for t in _MISTRAL):
        return _MISTRAL_TEMPLATE
    return None


def read_fim_template(path: Path) -> str | None:
    """The FIM template of a model's files (GGUF vocabulary or tokenizer.json); None if it has none."""
    try:
        if is_gguf(path):
            vocabulary = gguf_metadata(path, arrays=[_TOKENS_KEY]).get(_TOKENS_KEY, [])
            return detect_fim_template(FIM_TOKENS & set(vocabulary))
        return detect_fim_template(_tokenizer_json_tokens(path / "tokenizer.json"))
    except (OSError, ValueError, struct.error):
        return None


def _tokenizer_json_tokens(path: Path) -> set[str]:
    tokenizer = json.loads(path.read_text())
    found = {t.get("content") for t in tokenizer.get("added_tokens", [])} & FIM_TOKENS
    vocab = tokenizer.get("model", {}).get("vocab", {})
    # BPE/WordPiece vocabularies are {text: id}; Unigram (SentencePiece) ones are [[text, score], ...].
    pieces = vocab if isinstance(vocab, dict) else [item[0] for item in vocab]
    return found | (FIM_TOKENS & set(pieces))


_TOKEN_TYPES_KEY = "tokenizer.ggml.token_type"
_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL: what its parse_special turns text into


def control_tokens(path: Path) -> list[str]:
    """The text of a GGUF's control tokens (`<|im_start|>`, `<|eot_id|>` ...); [] when unreadable."""
    try:
        meta = gguf_metadata(path, arrays=[_TOKENS_KEY, _TOKEN_TYPES_KEY])
    except (OSError, ValueError, struct.error):
        return []
    tokens, types = meta.get(_TOKENS_KEY, []), meta.get(_TOKEN_TYPES_KEY, [])
    return [token for token, kind in zip(tokens, types, strict=False) if kind == _CONTROL]
