"""A model's metadata as GGUF-style keys, for a GGUF file or an MLX/safetensors folder alike.

A GGUF file's header is its metadata (scalars and strings; arrays are skipped). A folder's config.json
is translated into the same keys (`general.architecture`, `<arch>.context_length`, ...), so Ollama's
/api/show can answer `model_info` for both, and `tokenizer.chat_template` holds the chat template.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from radis_mlx.store.gguf import gguf_metadata
from radis_mlx.store.templates import read_chat_template

# config.json keys → the GGUF key suffix after `<arch>.`
_CONFIG_KEYS = {
    "max_position_embeddings": "context_length",
    "hidden_size": "embedding_length",
    "num_hidden_layers": "block_count",
    "intermediate_size": "feed_forward_length",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
    "rope_theta": "rope.freq_base",
    "vocab_size": "vocab_size",
}


def model_metadata(path: Path) -> dict[str, Any]:
    """GGUF-style key/values of a model's files; {} when they cannot be read."""
    try:
        if path.is_file():
            return dict(gguf_metadata(path))
        if path.is_dir():
            return _folder_metadata(path)
    except (OSError, ValueError, struct.error):
        pass
    return {}


def _folder_metadata(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config")  # multimodal configs nest the language model's shape
    config = {**config, **text} if isinstance(text, dict) else config
    arch = str(config.get("model_type") or "")
    meta: dict[str, Any] = {"general.architecture": arch} if arch else {}
    for key, suffix in _CONFIG_KEYS.items():
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            meta[f"{arch}.{suffix}"] = value
    template = read_chat_template(folder)
    if template:
        meta["tokenizer.chat_template"] = template
    return meta
