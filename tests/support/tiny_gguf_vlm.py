"""The tiny SmolVLM folder (tiny_vlm.py) as llama.cpp files: a text GGUF and an mmproj GGUF.

Same weights as the MLX folder (read from its model.safetensors), so both engines serve "the same" model.
Needs only numpy + `gguf` (llama.cpp's own writer). Text model: arch "llama", F32, the byte-level BPE as
tokenizer.ggml.model "gpt2" (pre "gpt-2"), the chat template embedded; Q/K rows permuted as
convert_hf_to_gguf.py's LlamaModel does. mmproj: arch "clip", projector "idefics3" (SigLIP ViT + pixel
shuffle + mm.model.fc), with the keys and tensor names llama.cpp's tools/mtmd/clip.cpp requires.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = (
            np.frombuffer(raw[base + a : base + b], dtype=SAFETENSORS_DTYPES[info["dtype"]])
            .reshape(info["shape"])
            .astype(np.float32)
        )
    return out


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half head layout -> llama.cpp's."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_text_gguf(src: Path, dst: Path, w: dict, config: dict) -> None:
    import gguf

    t = config["text_config"]
    tok = json.loads((src / "tokenizer.json").read_text())
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text())
    vocab = tok["model"]["vocab"]
    added = {a["content"]: a["id"] for a in tok["added_tokens"]}
    tokens = [None] * t["vocab_size"]
    for piece, i in {**vocab, **added}.items():
        tokens[i] = piece
    assert all(p is not None for p in tokens), "vocab ids must be dense"
    types = [gguf.TokenType.CONTROL if p in added else gguf.TokenType.NORMAL for p in tokens]
    merges = [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]

    wr = gguf.GGUFWriter(str(dst), "llama")
    wr.add_name("tiny-smolvlm")
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_context_length(t["max_position_embeddings"])
    wr.add_embedding_length(t["hidden_size"])
    wr.add_block_count(t["num_hidden_layers"])
    wr.add_feed_forward_length(t["intermediate_size"])
    wr.add_head_count(t["num_attention_heads"])
    wr.add_head_count_kv(t["num_key_value_heads"])
    wr.add_layer_norm_rms_eps(t["rms_norm_eps"])
    wr.add_rope_freq_base(t["rope_theta"])
    wr.add_rope_dimension_count(t["hidden_size"] // t["num_attention_heads"])
    wr.add_vocab_size(t["vocab_size"])
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(
        "gpt-2"
    )  # = HF ByteLevel(use_regex=True) splitting; "default" differs on digits/spaces
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(added[tok_cfg["bos_token"]])
    wr.add_eos_token_id(added[tok_cfg["eos_token"]])
    wr.add_pad_token_id(added[tok_cfg["pad_token"]])
    wr.add_add_bos_token(False)
    wr.add_chat_template((src / "chat_template.jinja").read_text())

    H, KV = t["num_attention_heads"], t["num_key_value_heads"]
    lm = "language_model."
    wr.add_tensor("token_embd.weight", w[lm + "embed_tokens.weight"])
    wr.add_tensor("output_norm.weight", w[lm + "norm.weight"])
    wr.add_tensor("output.weight", w[lm + "lm_head.weight"])
    for i in range(t["num_hidden_layers"]):
        p, b = f"{lm}layers.{i}.", f"blk.{i}."
        wr.add_tensor(b + "attn_norm.weight", w[p + "input_layernorm.weight"])
        wr.add_tensor(b + "ffn_norm.weight", w[p + "post_attention_layernorm.weight"])
        wr.add_tensor(b + "attn_q.weight", permute_qk(w[p + "self_attn.q_proj.weight"], H))
        wr.add_tensor(b + "attn_k.weight", permute_qk(w[p + "self_attn.k_proj.weight"], KV))
        wr.add_tensor(b + "attn_v.weight", w[p + "self_attn.v_proj.weight"])
        wr.add_tensor(b + "attn_output.weight", w[p + "self_attn.o_proj.weight"])
        wr.add_tensor(b + "ffn_gate.weight", w[p + "mlp.gate_proj.weight"])
        wr.add_tensor(b + "ffn_up.weight", w[p + "mlp.up_proj.weight"])
        wr.add_tensor(b + "ffn_down.weight", w[p + "mlp.down_proj.weight"])
    _finish(wr)


def write_mmproj_gguf(src: Path, dst: Path, w: dict, config: dict) -> None:
    import gguf

    v, t = config["vision_config"], config["text_config"]
    pre = json.loads((src / "preprocessor_config.json").read_text())
    wr = gguf.GGUFWriter(str(dst), "clip")
    wr.add_name("tiny-smolvlm mmproj")
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_clip_has_vision_encoder(True)
    wr.add_clip_projector_type("idefics3")
    wr.add_vision_image_size(v["image_size"])
    wr.add_vision_patch_size(v["patch_size"])
    wr.add_vision_embedding_length(v["hidden_size"])
    wr.add_vision_feed_forward_length(v["intermediate_size"])
    wr.add_vision_block_count(v["num_hidden_layers"])
    wr.add_vision_head_count(v["num_attention_heads"])
    wr.add_vision_attention_layernorm_eps(v["layer_norm_eps"])
    wr.add_vision_projection_dim(t["hidden_size"])
    wr.add_vision_image_mean(pre["image_mean"])
    wr.add_vision_image_std(pre["image_std"])
    wr.add_vision_use_gelu(True)  # SigLIP's gelu_pytorch_tanh (mlx-vlm's GELUMLP uses erf: tiny drift)
    wr.add_vision_projector_scale_factor(config["scale_factor"])
    # Longest edge images are resized to before slicing into image_size tiles (SmolVLM: size.longest_edge).
    wr.add_vision_preproc_image_size(pre["size"]["longest_edge"])

    vm = "vision_model."
    patch = w[vm + "embeddings.patch_embedding.weight"]  # MLX O,H,W,C -> PyTorch/GGUF O,C,H,W
    wr.add_tensor("v.patch_embd.weight", np.ascontiguousarray(patch.transpose(0, 3, 1, 2)))
    wr.add_tensor("v.patch_embd.bias", w[vm + "embeddings.patch_embedding.bias"])
    wr.add_tensor("v.position_embd.weight", w[vm + "embeddings.position_embedding.weight"])
    for i in range(v["num_hidden_layers"]):
        p, b = f"{vm}encoder.layers.{i}.", f"v.blk.{i}."
        for hf, gg in (
            ("q_proj", "attn_q"),
            ("k_proj", "attn_k"),
            ("v_proj", "attn_v"),
            ("out_proj", "attn_out"),
        ):
            wr.add_tensor(f"{b}{gg}.weight", w[f"{p}self_attn.{hf}.weight"])
            wr.add_tensor(f"{b}{gg}.bias", w[f"{p}self_attn.{hf}.bias"])
        for hf, gg in (("layer_norm1", "ln1"), ("layer_norm2", "ln2")):
            wr.add_tensor(f"{b}{gg}.weight", w[f"{p}{hf}.weight"])
            wr.add_tensor(f"{b}{gg}.bias", w[f"{p}{hf}.bias"])
        # fc1 (n_ff x n_embd) is ffn_up, fc2 (n_embd x n_ff) ffn_down; n_ff != n_embd, or clip.cpp's
        # legacy "ffn up/down swapped" heuristic would swap them.
        wr.add_tensor(f"{b}ffn_up.weight", w[f"{p}mlp.fc1.weight"])
        wr.add_tensor(f"{b}ffn_up.bias", w[f"{p}mlp.fc1.bias"])
        wr.add_tensor(f"{b}ffn_down.weight", w[f"{p}mlp.fc2.weight"])
        wr.add_tensor(f"{b}ffn_down.bias", w[f"{p}mlp.fc2.bias"])
    wr.add_tensor("v.post_ln.weight", w[vm + "post_layernorm.weight"])
    wr.add_tensor("v.post_ln.bias", w[vm + "post_layernorm.bias"])
    wr.add_tensor("mm.model.fc.weight", w["connector.modality_projection.proj.weight"])
    _finish(wr)


def _finish(wr) -> None:
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def build_gguf(src: Path, out: Path) -> tuple[Path, Path]:
    """Write `<name>.gguf` and `mmproj-<name>.gguf` for the MLX folder `src` into `out`."""
    config = json.loads((src / "config.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    w = read_safetensors(src / "model.safetensors")
    text, mmproj = out / f"{src.name}.gguf", out / f"mmproj-{src.name}.gguf"
    write_text_gguf(src, text, w, config)
    write_mmproj_gguf(src, mmproj, w, config)
    return text, mmproj
