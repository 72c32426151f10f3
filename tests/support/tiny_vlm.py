"""The smallest real vision-language model folder mlx_vlm.load() loads: random weights, real files.

SmolVLM / Idefics3 layout (HuggingFaceTB/SmolVLM-256M-Instruct's config shape): a "llama" text model,
a "smolvlm_vision" (SigLIP) encoder and a pixel-shuffle connector; mlx-vlm's SmolVLMProcessor with
transformers' PIL image processor (no torch). Text hidden 64, 2 layers; vision hidden 32, 64x64 images of
8x8 patches -> 16 image tokens (19 with their wrappers). About 0.6 MB; mlx_vlm.load ~0.1 s.

The tokenizer is a byte-level BPE trained here with `tokenizers` (no download), so the folder needs only
mlx + tokenizers to write; tiny_gguf_vlm.py turns it into a GGUF + mmproj pair for llama.cpp.
Built from the prototype in the vision notes (make_tiny_vlm.py), its llava variant left out (mlx-vlm
0.7.10's LlavaProcessor fails on transformers 5).
"""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_TOKEN = "<image>"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", IMAGE_TOKEN]
SPECIAL += ["<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
TEXT = dict(
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    max_position_embeddings=2048,
)
VISION = dict(
    hidden_size=32,
    num_hidden_layers=2,
    intermediate_size=48,  # != hidden: llama.cpp's clip loader would swap ffn up/down otherwise
    num_attention_heads=4,
    image_size=64,
    patch_size=8,
    layer_norm_eps=1e-6,
)
SCALE_FACTOR = 2  # pixel shuffle: (64/8)^2 / 2^2 = 16 tokens per image
IMAGE_TOKENS = (VISION["image_size"] // VISION["patch_size"]) ** 2 // SCALE_FACTOR**2

# SmolVLM's own template, extended to accept string content (as the OpenAI shapes send it).
TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "User: What is in this image? Describe the picture in one sentence.",
    "Assistant: A red square, a blue circle, and a green triangle on a white background.",
    "Hello! How can I help you today? I am a helpful assistant.",
    "user assistant system image picture photo color shape left right top bottom",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
    # "\n" and "\n\n" must be single tokens: llama.cpp's mtmd looks "\n\n" up for idefics3 images.
    "First paragraph.\n\n",
    "Second paragraph.\n\n",
    "line\n",
    '{"name": "value", "city": "Paris", "answer": true}',
]


def build_tokenizer(out: Path, vocab_size: int = 360) -> int:
    """A byte-level BPE (GPT-2 style, so llama.cpp's "gpt2" tokenizer reads it too); its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    extra = {
        "image_token": IMAGE_TOKEN,
        "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>",
        "end_of_utterance_token": "<end_of_utterance>",
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": TEXT["max_position_embeddings"],
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "extra_special_tokens": extra,  # transformers 5: tokenizer.image_token and friends
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return tok.get_vocab_size()


def build(out: Path, seed: int = 0) -> Path:
    """Write the model folder (config, weights, tokenizer, processor files, chat template) into `out`."""
    import mlx.core as mx

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    ids = {t["content"]: t["id"] for t in json.loads((out / "tokenizer.json").read_text())["added_tokens"]}
    text_config = {
        "model_type": "llama",
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "head_dim": TEXT["hidden_size"] // TEXT["num_attention_heads"],
        **TEXT,
    }
    config = {
        "model_type": "smolvlm",
        "architectures": ["SmolVLMForConditionalGeneration"],
        "image_token_id": ids[IMAGE_TOKEN],
        "scale_factor": SCALE_FACTOR,
        "vocab_size": vocab,
        "eos_token_id": [ids["<end_of_utterance>"]],
        "pad_token_id": ids["<|endoftext|>"],
        "text_config": text_config,
        "vision_config": {
            "model_type": "smolvlm_vision",
            "num_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
            **VISION,
        },
    }
    preprocessor = {
        "image_processor_type": "SmolVLMImageProcessor",
        "processor_class": "SmolVLMProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "resample": 1,
        "size": {"longest_edge": VISION["image_size"]},
        "max_image_size": {"longest_edge": VISION["image_size"]},
        "do_image_splitting": False,
        "do_pad": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    processor = {"processor_class": "SmolVLMProcessor", "image_seq_len": IMAGE_TOKENS}
    (out / "processor_config.json").write_text(json.dumps(processor, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "chat_template.jinja").write_text(TEMPLATE)
    (out / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    mx.random.seed(seed)
    mx.save_safetensors(str(out / "model.safetensors"), _weights(config), metadata={"format": "mlx"})
    return out


def _weights(config: dict) -> dict:
    """{name: array} with exactly the names and MLX layouts mlx-vlm's smolvlm Model loads (strict).

    Scales are chosen so that the image visibly moves the logits (embeddings std 1, projections std
    0.2-0.5): two different images then give different greedy text.
    """
    import mlx.core as mx

    t, v = config["text_config"], config["vision_config"]
    width, ffn, vocab = t["hidden_size"], t["intermediate_size"], t["vocab_size"]
    kv = t["num_key_value_heads"] * (width // t["num_attention_heads"])
    v_width, v_ffn, patch = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    patches = (v["image_size"] // patch) ** 2

    def rnd(*shape: int, std: float = 0.02) -> mx.array:
        return (mx.random.normal(shape) * std).astype(mx.float32)

    lm, vm = "language_model.", "vision_model."
    w = {
        lm + "embed_tokens.weight": rnd(vocab, width, std=1.0),
        lm + "norm.weight": mx.ones((width,)),
        lm + "lm_head.weight": rnd(vocab, width, std=0.5),
    }
    for i in range(t["num_hidden_layers"]):
        p = f"{lm}layers.{i}."
        w[p + "input_layernorm.weight"] = mx.ones((width,))
        w[p + "post_attention_layernorm.weight"] = mx.ones((width,))
        w[p + "self_attn.q_proj.weight"] = rnd(width, width, std=0.2)
        w[p + "self_attn.k_proj.weight"] = rnd(kv, width, std=0.2)
        w[p + "self_attn.v_proj.weight"] = rnd(kv, width, std=0.2)
        w[p + "self_attn.o_proj.weight"] = rnd(width, width, std=0.2)
        w[p + "mlp.gate_proj.weight"] = rnd(ffn, width, std=0.2)
        w[p + "mlp.up_proj.weight"] = rnd(ffn, width, std=0.2)
        w[p + "mlp.down_proj.weight"] = rnd(width, ffn, std=0.2)
    w[vm + "embeddings.patch_embedding.weight"] = rnd(v_width, patch, patch, 3, std=0.2)  # O,H,W,C
    w[vm + "embeddings.patch_embedding.bias"] = rnd(v_width)
    w[vm + "embeddings.position_embedding.weight"] = rnd(patches, v_width, std=0.5)
    w[vm + "post_layernorm.weight"] = mx.ones((v_width,))
    w[vm + "post_layernorm.bias"] = mx.zeros((v_width,))
    for i in range(v["num_hidden_layers"]):
        p = f"{vm}encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[p + f"self_attn.{name}.weight"] = rnd(v_width, v_width, std=0.2)
            w[p + f"self_attn.{name}.bias"] = rnd(v_width)
        for name in ("layer_norm1", "layer_norm2"):
            w[p + f"{name}.weight"] = mx.ones((v_width,))
            w[p + f"{name}.bias"] = mx.zeros((v_width,))
        w[p + "mlp.fc1.weight"] = rnd(v_ffn, v_width, std=0.2)
        w[p + "mlp.fc1.bias"] = rnd(v_ffn)
        w[p + "mlp.fc2.weight"] = rnd(v_width, v_ffn, std=0.2)
        w[p + "mlp.fc2.bias"] = rnd(v_width)
    w["connector.modality_projection.proj.weight"] = rnd(width, v_width * SCALE_FACTOR**2, std=0.5)
    mx.eval(w)
    return w
