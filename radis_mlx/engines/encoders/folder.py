"""What a Hugging Face / sentence-transformers BERT folder says about serving it.

Its task (an embedder, or a cross-encoder whose classifier scores (query, document) pairs), the
pooling modes and Normalize module of its sentence-transformers config, and its maximum length.
Folders whose modules would change the vectors in ways no engine here implements are refused, so
no engine ever returns plausible but wrong vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radis_mlx.errors import UnsupportedModelError

EMBEDDING_ARCHITECTURES = {"BertModel", "BertForMaskedLM"}
RERANK_ARCHITECTURES = {"BertForSequenceClassification"}
# sentence-transformers concatenates the enabled pooling modes in this order.
POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")
_KNOWN_MODULES = {"Transformer", "Pooling", "Normalize"}


@dataclass
class EncoderFolder:
    """A BERT folder as the engines need it."""

    path: Path
    config: dict[str, Any]
    task: str  # "embedding" or "rerank"
    pooling: list[str]  # sentence-transformers pooling modes (embedders)
    normalize: bool  # a Normalize module (embedders)
    max_length: int  # tokens per input (per pair for rerankers), special tokens included


def read_folder(path: Path, kind: str) -> EncoderFolder:
    """Read and check a model folder for an entry of `kind` ("embedding" or "rerank")."""
    if not (path / "config.json").is_file() or not any(path.glob("model*.safetensors")):
        raise UnsupportedModelError(
            f"{path.name} is not an encoder model folder (config.json + model.safetensors)", param="model"
        )
    config = json.loads((path / "config.json").read_text())
    architecture = (config.get("architectures") or ["BertModel"])[0]
    if config.get("model_type", "bert") != "bert" or architecture not in (
        EMBEDDING_ARCHITECTURES | RERANK_ARCHITECTURES
    ):
        raise UnsupportedModelError(
            f"{path.name}: architecture {architecture} ({config.get('model_type')}) is not a BERT encoder "
            f"radis-mlx serves ({', '.join(sorted(EMBEDDING_ARCHITECTURES | RERANK_ARCHITECTURES))})",
            param="model",
        )
    task = "rerank" if architecture in RERANK_ARCHITECTURES else "embedding"
    if task != kind:
        hint = (
            'a cross-encoder: set kind = "rerank"'
            if task == "rerank"
            else "an embedder: it has no classifier"
        )
        raise UnsupportedModelError(f"{path.name} is {hint}", param="model")
    pooling, normalize = (
        sentence_transformers_modules(path) if task == "embedding" else (["cls_token"], False)
    )
    return EncoderFolder(
        path, config, task, pooling, normalize, max_length(path, config["max_position_embeddings"])
    )


def sentence_transformers_modules(folder: Path) -> tuple[list[str], bool]:
    """Pooling modes and whether to normalize; a plain BERT folder means mean pooling, no Normalize."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return ["mean_tokens"], False
    modules = json.loads(modules_file.read_text())
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    unknown = set(kinds) - _KNOWN_MODULES
    if unknown:
        raise UnsupportedModelError(
            f"sentence-transformers modules {sorted(unknown)} are not supported", param="model"
        )
    modes = ["mean_tokens"]
    if "Pooling" in kinds:
        pooling = json.loads((folder / kinds["Pooling"]["path"] / "config.json").read_text())
        unsupported = [
            k
            for k, v in pooling.items()
            if k.startswith("pooling_mode_") and v and k[13:] not in POOLING_MODES
        ]
        if unsupported:
            raise UnsupportedModelError(f"pooling {unsupported} is not supported", param="model")
        modes = [m for m in POOLING_MODES if pooling.get(f"pooling_mode_{m}")]
        if not modes:
            raise UnsupportedModelError("the Pooling module enables no pooling mode", param="model")
    return modes, "Normalize" in kinds


def max_length(folder: Path, positions: int) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's, never past the position table."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        file = folder / name
        if file.is_file():
            value = json.loads(file.read_text()).get(key)
            if isinstance(value, int) and value > 0:
                return min(value, positions)
    return positions
