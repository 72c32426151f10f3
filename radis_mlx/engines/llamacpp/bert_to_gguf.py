"""A BERT folder (a sentence-transformers embedder or a cross-encoder) as a GGUF llama.cpp serves.

Converted once with the `gguf` package's writer (no torch) and cached under the cache folder, keyed
by the folder's path and its files' sizes and times. It writes what llama.cpp's own converter
(convert_hf_to_gguf.py, class BertModel) writes for architecture "bert", in float32, with three
differences, all for cross-encoders:

* The pooler is kept, as llama.cpp's `cls` (dense + tanh) before `cls.output` (the classifier):
  transformers' head exactly. Upstream drops it, and its files score a different function.
* pooling_type RANK is written (upstream leaves it to llama-server's --reranking).
* The vocabulary is written twice: ids from SEGMENT_OFFSET_KEY on are the same tokens with the second
  segment's embedding folded in (word + token_type[1] - token_type[0]). llama.cpp adds token type 0
  to every token; the engine sends a document's ids in the second copy, so the sum is transformers'.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radis_mlx.engines.encoders.folder import EncoderFolder, read_folder
from radis_mlx.engines.encoders.gguf_vocab import PHANTOM_SPACE, SEGMENT_OFFSET_KEY
from radis_mlx.errors import ModelLoadError, UnsupportedModelError

log = logging.getLogger(__name__)

# Part of the cache key: bump it whenever the output changes, so old conversions are not reused.
CONVERTER_VERSION = "1"
_POOLING = {"mean_tokens": 1, "cls_token": 2}  # gguf.PoolingType MEAN, CLS; RANK is 4
_GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh")
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5


def convert_folder(folder: Path, kind: str, cache_root: Path) -> Path:
    """The GGUF for a BERT folder: converted on first use, then reused while its files are unchanged."""
    folder = folder.absolute()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors"))
    ident = "\0".join(
        [CONVERTER_VERSION, str(folder), kind]
        + [f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    )
    target = (
        Path(cache_root)
        / "bert-gguf"
        / f"{folder.name}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.gguf"
    )
    if target.is_file():
        return target
    spec = read_folder(folder, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        started = time.perf_counter()
        write_gguf(spec, Path(tmp))
        os.replace(tmp, target)  # only finished files get the name; a concurrent twin's is as good
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("converted %s to %s in %.1fs", folder.name, target, time.perf_counter() - started)
    return target


def write_gguf(spec: EncoderFolder, out: Path) -> None:
    """Write the GGUF of a checked folder."""
    import gguf

    for noisy in ("gguf.vocab", "gguf.gguf_writer"):  # "no handler for special token type cls", ...
        logging.getLogger(noisy).setLevel(logging.ERROR)

    cfg = spec.config
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModelError(
            "llama.cpp's bert graph has absolute position embeddings only", param="model"
        )
    if cfg.get("hidden_act", "gelu") not in _GELU:
        raise UnsupportedModelError(
            f"activation {cfg['hidden_act']!r}: llama.cpp's bert graph uses GELU", param="model"
        )
    rerank = spec.task == "rerank"
    if not rerank and (len(spec.pooling) != 1 or spec.pooling[0] not in _POOLING):
        raise UnsupportedModelError(
            f'pooling {"+".join(spec.pooling)} has no llama.cpp equivalent (mean or cls); use engine = "mlx"',
            param="model",
        )
    weights = dict(_tensors(spec.path))
    tokens, types = _vocabulary(spec.path, int(cfg["vocab_size"]))
    size = len(tokens)
    if rerank and "cls.output.weight" not in weights:
        raise UnsupportedModelError(f"{spec.path.name} has no classifier weights", param="model")
    segments = weights.get("token_types.weight")
    copies = rerank and segments is not None and segments.shape[0] >= 2
    if copies and segments is not None:
        # The second segment's copy of the vocabulary (see the module docstring).
        word = weights["token_embd.weight"]
        weights["token_embd.weight"] = np.concatenate([word, word + (segments[1] - segments[0])])
        tokens += [f"<segment-1:{i}>" for i in range(size)]
        types += [_UNUSED] * size

    writer = gguf.GGUFWriter(str(out), "bert")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(spec.path.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_block_count(int(cfg["num_hidden_layers"]))
    writer.add_context_length(int(cfg["max_position_embeddings"]))  # the rows of position_embd
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK if rerank else gguf.PoolingType(_POOLING[spec.pooling[0]]))
    writer.add_token_type_count(int(cfg.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp reads `pre` for BPE vocabularies only
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(spec.path, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    if copies:
        writer.add_uint32(SEGMENT_OFFSET_KEY, size)
    if rerank:
        labels = cfg.get("id2label") or {}
        rows = weights["cls.output.weight"].shape[0]
        writer.add_classifier_output_labels([str(labels.get(str(i), f"LABEL_{i}")) for i in range(rows)])
    for name, array in weights.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _vocabulary(folder: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """The WordPiece vocabulary in id order, as llama.cpp's phantom-space tokens, with token types."""
    file = folder / "tokenizer.json"
    if not file.is_file():
        raise UnsupportedModelError(f"{folder.name} has no tokenizer.json", param="model")
    tokenizer = json.loads(file.read_text(encoding="utf-8"))
    model = tokenizer["model"]
    if model.get("type") != "WordPiece" or model.get("continuing_subword_prefix", "##") != "##":
        raise UnsupportedModelError(
            f"tokenizer {model.get('type')}: llama.cpp's bert vocabulary is WordPiece", param="model"
        )
    normalizer = tokenizer.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer" and not normalizer.get("lowercase", True):
        raise UnsupportedModelError(
            "a cased WordPiece vocabulary: llama.cpp's bert tokenizer lowercases", param="model"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added: dict[int, bool] = {}
    for token in tokenizer.get("added_tokens", []):
        vocab[token["content"]] = token["id"]
        added[token["id"]] = bool(token.get("special"))
    if max(vocab.values()) >= vocab_size:
        raise UnsupportedModelError(
            f"token id {max(vocab.values())} is past vocab_size {vocab_size}", param="model"
        )
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # a gap, filled as upstream fills it
            tokens.append(f"[PAD{i}]")
            types.append(_UNUSED)
            continue
        text = by_id[i]
        kind = (_CONTROL if added[i] else _USER_DEFINED) if i in added else _NORMAL
        if kind != _CONTROL:  # llama.cpp matches "▁" + word; continuations lose their "##"
            text = text[2:] if text.startswith("##") else PHANTOM_SPACE + text
        tokens.append(text)
        types.append(kind)
    return tokens, types


def _tensors(folder: Path) -> Iterator[tuple[str, Any]]:
    """(GGUF name, float32 array) per kept tensor, in transformers' [out, in] layout."""
    import gguf
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, int(config["num_hidden_layers"]))
    rerank = (config.get("architectures") or [""])[0].endswith("ForSequenceClassification")
    for file in sorted(folder.glob("model*.safetensors")):
        with safe_open(str(file), framework="numpy") as stored:
            for key in stored.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                name = key.removeprefix("bert.").replace(".gamma", ".weight").replace(".beta", ".bias")
                if name.endswith("position_ids") or name.startswith(
                    ("cls.predictions", "cls.seq_relationship")
                ):
                    continue  # a buffer, and the pre-training heads
                if name.startswith(("pooler.", "classifier.")):
                    if not rerank:
                        continue  # embedders do not use the pooler
                    suffix = name.rsplit(".", 1)[1]
                    mapped: str | None = (
                        f"cls.{suffix}" if name.startswith("pooler.") else f"cls.output.{suffix}"
                    )
                else:
                    mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if mapped is None:
                    raise ModelLoadError(f"{folder.name}: cannot map tensor {key!r} to llama.cpp's bert")
                yield mapped, np.ascontiguousarray(stored.get_tensor(key), dtype=np.float32)
