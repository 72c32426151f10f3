"""What the end-to-end suite shares: the engines it runs on, the shared server's models.toml, prompts."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import MINILM_SOURCE, REPRODUCIBLE_LLAMACPP, STARTER_SOURCE

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]

# Every API test runs once per engine; the model id names the engine that serves it.
ENGINES = ["mlx", "llamacpp"]

# A Qwen2.5-style template that renders tools and <tool_call> tags: native tool calls on the starter model.
TOOL_TEMPLATE = (Path(__file__).parent / "tool_template.jinja").read_text()

# A template that opens <think> in the generation prompt (as Qwen3's thinking templates do): the starter
# model then serves as a reasoning model, its output steered into a reasoning shape by test grammars.
THINK_TEMPLATE = (Path(__file__).parent / "think_template.jinja").read_text()
# The same for tool calling: tool_template.jinja's <tool_call> format, with <think> opened as above.
THINK_TOOLS_TEMPLATE = (Path(__file__).parent / "think_tools_template.jinja").read_text()

# A declared fill-in-the-middle template; the starter's vocabulary has none of these tokens, so the
# markers are plain text to it (the rendered prompt is still exactly what the model is sent).
FIM_TEMPLATE = "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"

# The tiny random-weight vision model (tests/support/tiny_vlm.py) on each engine, built into the shared
# server's folder by build_vision_models: the MLX folder detected as a vision model by its config, the GGUF
# declared one (`kind = "vlm"`: llama.cpp on every host), its mmproj found beside it. Both mark reasoning
# with <think> tags, which their random weights never write unless a test grammar makes them.
VISION_MODELS = {"mlx": "tiny-vlm-mlx", "llamacpp": "tiny-vlm-llamacpp"}
VISION_DIR = "tiny-vlm"

# Files the shared server's folder holds (tests/e2e/conftest.py puts them there): all-MiniLM converted
# to GGUF by our converter (a GGUF embedding model), and a random-weight cross-encoder
# (tests/support/tiny_reranker.py).
MINILM_GGUF = "minilm.gguf"
TINY_RERANKER = "tiny-reranker"

# Further models.toml entries the suite serves (embedding models, ...), as TOML text. `minilm` runs on
# llama.cpp (converted to GGUF) and `minilm-mlx` on MLX, wherever the suite runs; `minilm-gguf` on auto.
EXTRA_MODELS = f"""
[models.tiny-vlm-mlx]
source = "./{VISION_DIR}/tiny-smolvlm"
context_length = 1024
reasoning = {{ start = "<think>", end = "</think>" }}

[models.tiny-vlm-llamacpp]
source = "./{VISION_DIR}/gguf/tiny-smolvlm.gguf"
kind = "vlm"
context_length = 1024
reasoning = {{ start = "<think>", end = "</think>" }}

[models.smollm2-tools-mlx]
source = "{STARTER_SOURCE}"
engine = "mlx"
context_length = 2048
chat_template = '''{TOOL_TEMPLATE}'''

[models.smollm2-tools-llamacpp]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048
chat_template = '''{TOOL_TEMPLATE}'''

[models.smollm2-think-llamacpp]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048
chat_template = '''{THINK_TEMPLATE}'''

[models.smollm2-fim-mlx]
source = "{STARTER_SOURCE}"
engine = "mlx"
context_length = 2048
fim_template = "{FIM_TEMPLATE}"

[models.smollm2-fim-llamacpp]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
context_length = 2048
fim_template = "{FIM_TEMPLATE}"

[models.minilm]
source = "{MINILM_SOURCE}"
kind = "embedding"
engine = "llamacpp"
max_inputs = 64
max_batch = 8

[models.minilm-mlx]
source = "{MINILM_SOURCE}"
kind = "embedding"
engine = "mlx"
max_inputs = 64
max_batch = 8

[models.minilm-strict]
source = "{MINILM_SOURCE}"
kind = "embedding"
engine = "llamacpp"
truncate = false
matryoshka = true

[models.minilm-strict-mlx]
source = "{MINILM_SOURCE}"
kind = "embedding"
engine = "mlx"
truncate = false
matryoshka = true

[models.minilm-gguf]
source = "./{MINILM_GGUF}"
kind = "embedding"

[models.smollm2-embedder]
source = "{STARTER_SOURCE}"
kind = "embedding"
engine = "llamacpp"
context_length = 64

[models.reranker-mlx]
source = "./{TINY_RERANKER}"
kind = "rerank"
engine = "mlx"
max_inputs = 16
max_batch = 4

[models.reranker-llamacpp]
source = "./{TINY_RERANKER}"
kind = "rerank"
engine = "llamacpp"
max_inputs = 16
max_batch = 4

[models.reranker-strict]
source = "./{TINY_RERANKER}"
kind = "rerank"
engine = "llamacpp"
truncate = false

[models.smollm2-embed-mlx]
source = "{STARTER_SOURCE}"
engine = "mlx"
embeddings = true

[models.smollm2-mlx-nocache]
source = "{STARTER_SOURCE}"
engine = "mlx"
context_length = 2048
prompt_cache_mib = 0

[models.smollm2-embed-llamacpp]
source = "{STARTER_SOURCE}"
engine = "llamacpp"
embeddings = true
context_length = 512
"""


def build_vision_models(workdir: Path) -> None:
    """Write the tiny vision model as an MLX folder and as a GGUF + mmproj pair under workdir/tiny-vlm."""
    from tests.support.tiny_gguf_vlm import build_gguf
    from tests.support.tiny_vlm import build

    folder = build(workdir / VISION_DIR / "tiny-smolvlm")
    build_gguf(folder, workdir / VISION_DIR / "gguf")


def e2e_config() -> str:
    entry = '[models.smollm2-{0}]\nsource = "{1}"\nengine = "{0}"\ncontext_length = 2048\n\n'
    entries = "".join(entry.format(engine, STARTER_SOURCE) for engine in ENGINES)
    broken = '[models.broken]\nsource = "./does-not-exist.gguf"\n\n'
    garbage = '[models.garbage]\nsource = "./garbage.gguf"\nengine = "mlx"\n'
    # The suite compares greedy answers across requests (stream == non-stream, Responses == chat, ...).
    return REPRODUCIBLE_LLAMACPP + entries + broken + garbage + EXTRA_MODELS
