"""A tiny random-weight cross-encoder written as a real model folder (BertForSequenceClassification).

Small (hidden 64, 2 layers, 4 heads) but with every tensor a real cross-encoder has, named as
transformers saves them, and all-MiniLM's tokenizer. Weights are scaled so scores spread over a few
units, and token type 1 differs clearly from type 0, so a server that got the document's segment
ids wrong would show it in the scores rather than hide it in rounding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def make_tiny_reranker(out: Path, tokenizer_from: Path, seed: int = 0, max_length: int = 128) -> Path:
    """Write the folder (model.safetensors, config.json, the tokenizer files); `max_length` per pair."""
    hidden, layers, heads, ffn, vocab, positions = 64, 2, 4, 128, 30522, 512
    rng = np.random.default_rng(seed)

    def normal(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    tensors = {
        "bert.embeddings.word_embeddings.weight": normal(vocab, hidden, std=1.0),
        "bert.embeddings.position_embeddings.weight": normal(positions, hidden, std=0.3),
        "bert.embeddings.token_type_embeddings.weight": normal(2, hidden, std=1.0),
        "bert.embeddings.LayerNorm.weight": 1 + normal(hidden, std=0.1),
        "bert.embeddings.LayerNorm.bias": normal(hidden, std=0.1),
        "bert.embeddings.position_ids": np.arange(positions, dtype=np.int64)[None],
    }
    shapes = {
        "attention.self.query": (hidden, hidden),
        "attention.self.key": (hidden, hidden),
        "attention.self.value": (hidden, hidden),
        "attention.output.dense": (hidden, hidden),
        "intermediate.dense": (ffn, hidden),
        "output.dense": (hidden, ffn),
    }
    for i in range(layers):
        prefix = f"bert.encoder.layer.{i}."
        for name, (rows, cols) in shapes.items():
            tensors[prefix + name + ".weight"] = normal(rows, cols, std=1.0 / np.sqrt(cols))
            tensors[prefix + name + ".bias"] = normal(rows, std=0.05)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[prefix + norm + ".weight"] = 1 + normal(hidden, std=0.1)
            tensors[prefix + norm + ".bias"] = normal(hidden, std=0.1)
    tensors["bert.pooler.dense.weight"] = normal(hidden, hidden, std=1.0 / np.sqrt(hidden))
    tensors["bert.pooler.dense.bias"] = normal(hidden, std=0.05)
    tensors["classifier.weight"] = normal(1, hidden, std=3.0 / np.sqrt(hidden))
    tensors["classifier.bias"] = np.array([0.25], dtype=np.float32)

    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "vocab_size": vocab,
        "max_position_embeddings": positions,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy(tokenizer_from / name, out / name)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(
        json.dumps({**tokenizer_config, "model_max_length": max_length})
    )
    return out
