"""A BERT embedding GGUF as a sentence-transformers folder the MLX engine loads, converted once and cached.

The inverse of engines/llamacpp/bert_to_gguf.py: llama.cpp's tensor names back to transformers',
float32 weights (quantized ones dequantized by the `gguf` package), the WordPiece vocabulary as a
tokenizer.json (encoders/gguf_vocab.py, the tokenizer the llama.cpp engine uses for the same file),
the file's pooling as a Pooling module and a Normalize module: llama.cpp L2-normalizes embeddings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from radis_mlx.engines.encoders.gguf_vocab import wordpiece_tokenizer
from radis_mlx.errors import ModelLoadError, UnsupportedModelError
from radis_mlx.store.gguf import gguf_metadata

log = logging.getLogger(__name__)

# Part of the cache key: bump it whenever the output changes.
CONVERTER_VERSION = "1"
_POOLING = {1: "pooling_mode_mean_tokens", 2: "pooling_mode_cls_token"}
_LAYER_TENSORS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
)


def convert_bert_gguf(path: Path, cache_root: Path) -> Path:
    """The folder for a BERT embedding GGUF, converted on first use and reused while the file is unchanged."""
    path = path.absolute()
    stat = path.stat()
    ident = f"{CONVERTER_VERSION}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    target = Path(cache_root) / "gguf-mlx" / f"{path.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
    if (target / "config.json").is_file():  # written last: a config means a finished conversion
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _convert_into(path, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent conversion won; its copy is as good
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s to %s", path.name, target)
    return target


def _convert_into(path: Path, out: Path) -> None:
    import gguf
    from safetensors.numpy import save_file

    meta = gguf_metadata(path)
    arch = meta.get("general.architecture")
    pooling = meta.get(f"{arch}.pooling_type")
    if arch != "bert" or pooling not in _POOLING:
        raise UnsupportedModelError(
            f"{path.name}: MLX runs BERT embedding GGUFs with mean or CLS pooling, not {arch} "
            f'(pooling {pooling}); serve it with engine = "llamacpp"',
            param="model",
        )
    layers = int(meta["bert.block_count"])
    names = _transformers_names(layers)
    weights = {}
    for tensor in gguf.GGUFReader(str(path)).tensors:
        if tensor.name not in names:
            continue  # a head (cls.*), which embedders do not use
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = [int(n) for n in reversed(tensor.shape)]
        weights[names[tensor.name]] = np.ascontiguousarray(np.asarray(data, dtype=np.float32).reshape(shape))
    if missing := sorted(set(names.values()) - set(weights)):
        raise ModelLoadError(f"{path.name} lacks tensors {missing[:3]}")
    save_file(weights, str(out / "model.safetensors"))
    wordpiece_tokenizer(path).save(str(out / "tokenizer.json"))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({_POOLING[pooling]: True}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(weights["embeddings.word_embeddings.weight"].shape[0]),
        "hidden_size": int(meta["bert.embedding_length"]),
        "num_hidden_layers": layers,
        "num_attention_heads": int(meta["bert.attention.head_count"]),
        "intermediate_size": int(meta["bert.feed_forward_length"]),
        "max_position_embeddings": int(weights["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(weights["embeddings.token_type_embeddings.weight"].shape[0]),
        "layer_norm_eps": float(meta.get("bert.attention.layer_norm_epsilon", 1e-12)),
        "hidden_act": "gelu",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))


def _transformers_names(layers: int) -> dict[str, str]:
    """llama.cpp's tensor name → transformers' BertModel name, from the gguf package's own table."""
    import gguf

    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, layers)
    ours = [
        "embeddings.word_embeddings",
        "embeddings.position_embeddings",
        "embeddings.token_type_embeddings",
        "embeddings.LayerNorm",
    ] + [f"encoder.layer.{i}.{name}" for i in range(layers) for name in _LAYER_TENSORS]
    names = {}
    for name in ours:
        mapped = table.get_name(name)
        if mapped is None:
            raise ModelLoadError(f"the gguf package does not map {name}")
        names[f"{mapped}.weight"] = f"{name}.weight"
        if not name.endswith(("word_embeddings", "position_embeddings", "token_type_embeddings")):
            names[f"{mapped}.bias"] = f"{name}.bias"
    return names
