"""Turn a llama.cpp GGUF file into an mlx-lm model directory, once, and cache it.

`mx.load` reads GGUF natively and hands Q4_0/Q4_1/Q8_0 back already packed as MLX affine quantization,
so weights are only renamed, never requantized. The tokenizer is rebuilt from the GGUF metadata with
transformers' torch-free GGUF tokenizer mapping, so text splits the way llama.cpp splits it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import mlx.core as mx

from radis_mlx.errors import ModelLoadError, UnsupportedModelError

logger = logging.getLogger(__name__)

# Part of the cache key: bump it whenever the output changes, so old conversions are not reused.
CONVERTER_VERSION = "1"

# Architecture -> rope_traditional. llama.cpp permutes llama's q/k rows so rotary pairs sit side by
# side; mlx-lm's traditional RoPE reads that layout directly, so nothing needs un-permuting.
_ARCHITECTURES = {"llama": True, "qwen2": False}

# The types mx.load decodes correctly, checked against the gguf package's reference dequantize.
# Q4_K is out on purpose: MLX 0.32 decodes half its sub-blocks wrongly, with no error.
# Q2_K, Q6_K and BF16 come back as float16: exact, but unpacked.
_LOADABLE_TYPES = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", "Q2_K", "Q6_K"}
_GROUP_SIZE = 32  # the block size of every type MLX keeps packed

_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TENSOR_RE = re.compile(r"(?:blk\.(\d+)\.)?(\w+)\.(weight|scales|biases|bias)")

# llama.cpp pre-tokenizers that isolate each digit (\p{N}) before the GPT-2 split. transformers'
# mapping does not list them and falls back to plain GPT-2, which splits e.g. " ½" differently.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
# llama.cpp also ends generation on these control tokens, whatever eos the file declares.
_EOG_TEXTS = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"}


# The GGUF file a conversion was made from, inside the conversion's folder.
SOURCE_MARKER = "source.txt"


def convert_gguf(gguf_path: Path, cache_root: Path) -> Path:
    """Return an mlx-lm model directory for a GGUF file, converting once and caching it."""
    gguf_path = Path(gguf_path).absolute()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file {gguf_path} does not exist or is not a file")
    stat = gguf_path.stat()
    ident = f"{CONVERTER_VERSION}\0{gguf_path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    target = (
        Path(cache_root) / "gguf-mlx" / f"{gguf_path.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
    )
    # Only complete conversions are renamed into place, so a config.json means a finished one.
    if (target / "config.json").is_file():
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        started = time.perf_counter()
        _convert_into(gguf_path, tmp)
        (tmp / SOURCE_MARKER).write_text(str(gguf_path))  # whose conversion this is (`rm` reads it)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent conversion won; its copy is as good
        logger.info("Converted %s to %s in %.1fs", gguf_path.name, target, time.perf_counter() - started)
        return target
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _convert_into(gguf_path: Path, out: Path) -> None:
    _check_tensor_types(gguf_path)
    try:
        weights, meta = cast(
            tuple[dict[str, mx.array], dict[str, Any]], mx.load(str(gguf_path), return_metadata=True)
        )
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelLoadError(f"Cannot read GGUF file {gguf_path.name}: truncated or corrupt ({e})") from e
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        supported = ", ".join(sorted(_ARCHITECTURES))
        raise UnsupportedModelError(f"GGUF architecture '{arch}' is not supported (supported: {supported})")
    weights = _rename(weights)
    config = _model_config(arch, meta, weights)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    _save_tokenizer(arch, meta, out)
    # Build the model once, lazily, so a file that does not fit mlx-lm fails here and is never cached.
    from mlx_lm.utils import load_model

    try:
        load_model(out, lazy=True)
    except Exception as e:
        raise UnsupportedModelError(f"GGUF {gguf_path.name} does not fit mlx-lm's {arch} model: {e}") from e


def _check_tensor_types(gguf_path: Path) -> None:
    import gguf  # mx.load neither says which type a tensor had nor fails on all it cannot read

    try:
        tensors = gguf.GGUFReader(gguf_path).tensors
    except Exception as e:  # the reader raises ValueError, KeyError, struct.error... on bad files
        raise ModelLoadError(f"Cannot read GGUF file {gguf_path.name}: truncated or not GGUF ({e})") from e
    bad = Counter(t.tensor_type.name for t in tensors if t.tensor_type.name not in _LOADABLE_TYPES)
    if bad:
        example = next(t.name for t in tensors if t.tensor_type.name in bad)
        kinds = ", ".join(f"{kind} ({n} tensors)" for kind, n in bad.items())
        raise UnsupportedModelError(
            f"GGUF tensor type not supported: {kinds}, e.g. '{example}'; use a Q4_0, Q4_1, Q8_0 or F16 file"
        )


def _rename(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    renamed = (
        {"rope_freqs.weight": weights.pop("rope_freqs.weight")} if "rope_freqs.weight" in weights else {}
    )
    for name, value in weights.items():
        m = _TENSOR_RE.fullmatch(name)
        table = _TOP_NAMES if m is None or m[1] is None else _BLOCK_NAMES
        if m is None or m[2] not in table:
            raise UnsupportedModelError(f"GGUF tensor '{name}' has no counterpart in mlx-lm")
        prefix = "" if m[1] is None else f"model.layers.{m[1]}."
        renamed[f"{prefix}{table[m[2]]}.{m[3]}"] = value
    return renamed


def _plain(value: Any) -> Any:
    return (value.item() if value.ndim == 0 else value.tolist()) if isinstance(value, mx.array) else value


def _model_config(arch: str, meta: dict[str, Any], weights: dict[str, mx.array]) -> dict[str, Any]:
    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, mx.array) and value.ndim:
            raise UnsupportedModelError(f"GGUF {arch}.{key} varies per layer, which is not supported")
        return _plain(value)

    if "model.embed_tokens.weight" not in weights:
        raise UnsupportedModelError("GGUF file has no token_embd tensor")
    heads = get("attention.head_count")
    config: dict[str, Any] = {
        "model_type": arch,
        "hidden_size": get("embedding_length"),
        "intermediate_size": get("feed_forward_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv", heads),
        "head_dim": get("attention.key_length"),
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon"),
        "rope_theta": get("rope.freq_base", 10000.0),
        "rope_traditional": _ARCHITECTURES[arch],
        "max_position_embeddings": get("context_length"),
        "vocab_size": weights["model.embed_tokens.weight"].shape[0],
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "attention_bias": "model.layers.0.self_attn.q_proj.bias" in weights,
        "eos_token_id": _eog_ids(meta),
    }
    if config["head_dim"] is None:
        config["head_dim"] = config["hidden_size"] // heads
    if scaling := _rope_scaling(get, weights.pop("rope_freqs.weight", None), config):
        config["rope_scaling"] = scaling
    if quantization := _quantization(weights):
        config["quantization"] = quantization
    return config


def _rope_scaling(get: Any, rope_freqs: mx.array | None, config: dict[str, Any]) -> dict[str, Any] | None:
    kind = get("rope.scaling.type", "none")
    if kind == "linear":
        return {"type": "linear", "factor": get("rope.scaling.factor")}
    if kind != "none":
        raise UnsupportedModelError(f"GGUF rope scaling '{kind}' is not supported")
    if rope_freqs is None:
        return None
    # llama.cpp bakes Llama 3's rope scaling into per-frequency factors and drops the parameters.
    # Every Llama 3.x release uses the values below; keep the guess only if it reproduces the factors.
    from mlx_lm.models.rope_utils import Llama3RoPE

    scaling = {"rope_type": "llama3", "factor": rope_freqs.max().item(), "low_freq_factor": 1.0}
    scaling |= {"high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    dims, base = config["head_dim"], config["rope_theta"]
    rope = Llama3RoPE(dims, config["max_position_embeddings"], base=base, scaling_config=scaling)
    unscaled = base ** (mx.arange(0, dims, 2) / dims)
    if not mx.allclose(rope._freqs / unscaled, rope_freqs.astype(mx.float32), rtol=1e-3).item():
        raise UnsupportedModelError("GGUF rope_freqs do not match Llama 3 rope scaling; not supported")
    return scaling


def _quantization(weights: dict[str, mx.array]) -> dict[str, Any]:
    # One entry per layer, bits read off the shapes (uint32 words per 32-weight group): a file may mix
    # Q8_0 embeddings with Q4 layers, and mlx-lm applies a per-layer entry as written.
    layers = {
        name.removesuffix(".scales"): {
            "group_size": _GROUP_SIZE,
            "bits": weights[name.replace(".scales", ".weight")].shape[-1] // scales.shape[-1],
            "mode": "affine",
        }
        for name, scales in weights.items()
        if name.endswith(".scales")
    }
    if not layers:
        return {}
    bits = Counter(q["bits"] for q in layers.values()).most_common(1)[0][0]
    return {"group_size": _GROUP_SIZE, "bits": bits, "mode": "affine", **layers}


def _eog_ids(meta: dict[str, Any]) -> list[int]:
    ids = {
        _plain(meta[f"tokenizer.ggml.{k}_token_id"])
        for k in ("eos", "eot", "eom")
        if f"tokenizer.ggml.{k}_token_id" in meta
    }
    types = _plain(meta.get("tokenizer.ggml.token_type", []))
    for i, (text, kind) in enumerate(zip(meta.get("tokenizer.ggml.tokens", []), types, strict=False)):
        if text in _EOG_TEXTS and kind == 3:  # 3: control token
            ids.add(i)
    return sorted(ids)


def _save_tokenizer(arch: str, meta: dict[str, Any], out: Path) -> None:
    # This module of transformers is torch-free; its GGUF entry point (from_pretrained(gguf_file=...)) is not.
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    spec, tokenizer_config = (
        {name: _plain(meta[f"tokenizer.{k}"]) for k, name in keys.items() if f"tokenizer.{k}" in meta}
        for keys in (GGUF_TOKENIZER_MAPPING["tokenizer"], GGUF_TOKENIZER_MAPPING["tokenizer_config"])
    )
    if "tokens" not in spec:
        raise UnsupportedModelError("GGUF file has no tokenizer vocabulary")
    if spec.get("tokenizer_type") == "llama":
        tokenizer_config.setdefault("add_bos_token", True)  # llama.cpp's default for sentencepiece
    try:
        backend, _ = convert_gguf_tokenizer(arch, spec)
    except (ValueError, KeyError) as e:
        raise UnsupportedModelError(f"GGUF tokenizer is not supported: {e}") from e
    if spec.get("pre_tokenizer_type") in _DIGIT_SPLIT_PRE:
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        token_id = _plain(meta.get(f"tokenizer.ggml.{key}_token_id"))
        if token_id is not None and token_id < len(spec["tokens"]):
            tokenizer_config[f"{role}_token"] = spec["tokens"][token_id]
    PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_config).save_pretrained(str(out))
