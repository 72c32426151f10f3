"""The llama.cpp engine on the real starter GGUF: engine choice, the child's command, the proxy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from radis_mlx.bench.servers import processes
from radis_mlx.config import Config, LlamaCppSettings, ModelEntry, with_overrides
from radis_mlx.engines.llamacpp.engine import LlamaCppEngine
from radis_mlx.engines.llamacpp.protocol import PENALTY_WINDOW, sampling_body
from radis_mlx.engines.llamacpp.server import llama_server_argv, parse_args
from radis_mlx.engines.registry import choose_engine
from radis_mlx.errors import (
    ContextLengthExceeded,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
)
from radis_mlx.generation.types import ChatMessage, GenerationRequest, SamplingParams
from tests.support.model_homes import gguf_file

pytestmark = pytest.mark.anyio
GREEDY = SamplingParams(temperature=0)

# A stand-in `llama-server`: parses the flags we pass the real binary and serves them with the wheel.
FAKE_LLAMA_SERVER = f"""#!{sys.executable}
import argparse, sys
from radis_mlx.engines.llamacpp import server as llamacpp_server
p = argparse.ArgumentParser()
for flag in ("--model", "--host", "--port", "--ctx-size", "--parallel", "--n-gpu-layers", "--threads"):
    p.add_argument(flag)
p.add_argument("--cache-ram")
for flag in ("--kv-unified", "--no-webui", "--embedding", "--jinja", "--no-jinja"):
    p.add_argument(flag, action="store_true")
a = p.parse_args()
assert a.host == "127.0.0.1" and a.kv_unified and a.jinja, sys.argv
assert a.cache_ram == "3", sys.argv  # listed in this stand-in's --help, so it is passed
args = llamacpp_server.parse_args(["--model", a.model, "--port", a.port, "--ctx-size", a.ctx_size,
                                   "--parallel", a.parallel, "--gpu-layers", a.n_gpu_layers,
                                   "--cache-ram", a.cache_ram])
llamacpp_server.serve_with_wheel(args)
"""


def entry(**kwargs) -> ModelEntry:
    return ModelEntry(source="x", **kwargs)


@pytest.mark.parametrize(
    ("host", "model", "kind", "configured", "expected"),
    [
        (("Linux", "x86_64"), "m.gguf", "llm", "auto", "llamacpp"),
        (("Linux", "aarch64"), "m.gguf", "llm", "auto", "llamacpp"),
        (("Darwin", "arm64"), "m.gguf", "llm", "auto", "mlx"),
        (("Linux", "x86_64"), "mlx-folder", "llm", "auto", "mlx"),
        (("Linux", "x86_64"), "m.gguf", "llm", "mlx", "mlx"),
        (("Darwin", "arm64"), "m.gguf", "llm", "llamacpp", "llamacpp"),
        # Embedders and cross-encoders: MLX on Apple Silicon where it runs them, llama.cpp elsewhere.
        (("Linux", "x86_64"), "bert.gguf", "embedding", "auto", "llamacpp"),
        (("Linux", "x86_64"), "st-folder", "embedding", "auto", "llamacpp"),
        (("Linux", "aarch64"), "st-folder", "rerank", "auto", "llamacpp"),
        (("Linux", "x86_64"), "st-folder", "embedding", "mlx", "mlx"),
        (("Darwin", "arm64"), "st-folder", "embedding", "auto", "mlx"),
        (("Darwin", "arm64"), "st-folder", "rerank", "auto", "mlx"),
        (("Darwin", "arm64"), "bert.gguf", "embedding", "auto", "mlx"),
        (("Darwin", "arm64"), "nomic.gguf", "embedding", "auto", "llamacpp"),
        (("Darwin", "arm64"), "bert.gguf", "embedding", "llamacpp", "llamacpp"),
    ],
)
def test_engine_choice(monkeypatch, tmp_path, host, model, kind, configured, expected):
    gguf_file(tmp_path / "bert.gguf", arch="bert", bert__pooling_type=1)
    gguf_file(tmp_path / "nomic.gguf", arch="nomic-bert", **{"nomic-bert__pooling_type": 1})
    monkeypatch.setattr("platform.system", lambda: host[0])
    monkeypatch.setattr("platform.machine", lambda: host[1])
    name, reason = choose_engine(entry(kind=kind, engine=configured), tmp_path / model)
    assert name == expected and reason


def test_the_wheel_serves_unless_a_binary_is_configured(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RADIS_LLAMA_SERVER", raising=False)
    settings = LlamaCppSettings(threads=3)
    engine = LlamaCppEngine(
        "m", Path("m.gguf"), context_length=512, settings=settings, prompt_cache_bytes=64 << 20
    )
    argv = engine.child_argv(4321)
    assert argv[1:3] == ["-m", "radis_mlx.engines.llamacpp.server"] and "--exec" not in argv
    parsed = parse_args(argv[3:])
    assert (parsed.port, parsed.ctx_size, parsed.parallel, parsed.threads) == (4321, 512, 4, 3)
    assert parsed.cache_ram == 64  # llama.cpp's RAM prompt cache bounded by our prompt cache setting
    assert parsed.jinja and not parsed.embedding

    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert engine.child_argv(1)[-2:] == ["--exec", str(binary)]  # found on PATH
    monkeypatch.setenv("RADIS_LLAMA_SERVER", "/no/such/llama-server")
    engine.settings = with_overrides(Config()).engines.llamacpp  # the environment, merged by config
    with pytest.raises(ModelLoadError, match="not found"):
        engine.child_argv(1)


def test_llama_server_command_line():
    args = parse_args(["--model", "m.gguf", "--port", "9", "--ctx-size", "64", "--embedding", "--no-jinja"])
    argv = llama_server_argv("/bin/llama-server", args)
    assert argv[:3] == ["/bin/llama-server", "--model", "m.gguf"]
    for flag, value in (("--port", "9"), ("--ctx-size", "64"), ("--parallel", "4"), ("--host", "127.0.0.1")):
        assert argv[argv.index(flag) + 1] == value
    assert {"--embedding", "--no-jinja", "--kv-unified"} <= set(argv) and "--threads" not in argv
    assert "--cache-ram" not in argv  # unset: llama-server's own default


def test_cache_ram_reaches_a_llama_server_that_lists_it(tmp_path):
    args = parse_args(["--model", "m.gguf", "--port", "9", "--cache-ram", "0"])
    new, old = tmp_path / "new-llama-server", tmp_path / "old-llama-server"
    new.write_text("#!/bin/sh\necho '--cache-ram, -cram N   set the maximum cache size in MiB'\n")
    old.write_text("#!/bin/sh\necho '--ctx-size N'\n")
    for binary in (new, old):
        binary.chmod(0o755)
    argv = llama_server_argv(str(new), args)
    assert argv[argv.index("--cache-ram") + 1] == "0"
    # A build from before llama.cpp had a RAM prompt cache would refuse the flag (and keeps no such cache).
    assert "--cache-ram" not in llama_server_argv(str(old), args)


def test_sampling_maps_onto_llama_cpp_names():
    params = SamplingParams(temperature=0.5, top_k=0, repetition_penalty=1.3, logit_bias={5: -2.0}, seed=3)
    body = sampling_body(params)
    assert body["repeat_penalty"] == 1.3 and body["repeat_last_n"] == PENALTY_WINDOW == 20
    assert body["top_k"] == 0 and body["min_p"] == 0.0 and body["typical_p"] == 1.0
    assert body["logit_bias"] == [[5, -2.0]] and body["seed"] == 3
    assert sampling_body(SamplingParams())["seed"] == -1  # llama.cpp: a random seed


@pytest.fixture(scope="module")
async def engine(smollm_gguf):
    # No prompt cache: the stop test compares two greedy runs of one prompt (tests/server.py says why).
    settings = LlamaCppSettings(cache_prompt=False)
    engine = LlamaCppEngine("smollm2", smollm_gguf, context_length=256, settings=settings)
    await engine.start()
    yield engine
    await engine.close()


async def run(engine, request):
    chunks = [chunk async for chunk in engine.generate(request)]
    return "".join(c.text for c in chunks), chunks[-1]


async def test_start_describes_the_model(engine, smollm_gguf):
    assert engine.info.name == "llamacpp" and engine.info.context_length == 256
    assert engine.info.size_bytes > 50_000_000 and engine.child.alive


async def test_generation_counts_and_finish(engine):
    text, last = await run(engine, GenerationRequest(prompt=[504, 3575, 282, 4649, 314], max_tokens=3))
    assert (last.prompt_tokens, last.completion_tokens, last.finish_reason) == (5, 3, "length")
    chat = GenerationRequest(messages=[ChatMessage("user", "Which city is the capital of France?")])
    text, last = await run(
        engine, GenerationRequest(**{**chat.__dict__, "max_tokens": 12, "sampling": GREEDY})
    )
    assert "Paris" in text and last.finish_reason == "stop"
    assert await engine.detokenize([504, 3575]) == "The capital"


async def test_stop_string_never_reaches_the_caller(engine):
    request = GenerationRequest(prompt="The capital of France is", max_tokens=8, sampling=GREEDY)
    full, _ = await run(engine, request)
    stop = full[3:7]
    cut, last = await run(engine, GenerationRequest(**{**request.__dict__, "stop": [stop]}))
    assert cut == full[: full.index(stop)] and last.finish_reason == "stop"


async def test_request_errors_come_before_the_first_chunk(engine):
    cases = [
        (GenerationRequest(prompt="word " * 300, max_tokens=1), ContextLengthExceeded),
        (GenerationRequest(prompt=[1, 10_000_000], max_tokens=1), InvalidRequestError),
        (GenerationRequest(prompt="", max_tokens=1), InvalidRequestError),
        (
            GenerationRequest(prompt="hi", sampling=SamplingParams(logit_bias={10**7: 1.0})),
            InvalidRequestError,
        ),
    ]
    for request, error in cases:
        with pytest.raises(error):
            await anext(engine.generate(request))
    with pytest.raises(InvalidRequestError):
        await engine.detokenize([10**7])


async def test_max_tokens_beyond_the_room_is_clamped_to_it(engine):
    # As llama-server, Ollama and LM Studio do: no 400, generation stops when the context is full.
    prompt = "1, 2, 3," * 30
    text, last = await run(engine, GenerationRequest(prompt=prompt, max_tokens=10_000, sampling=GREEDY))
    assert last.prompt_tokens + last.completion_tokens <= 256 and text
    assert last.completion_tokens > 0


async def test_max_tokens_none_fills_the_context(engine):
    text, last = await run(engine, GenerationRequest(prompt="1, 2, 3,", max_tokens=None, sampling=GREEDY))
    assert last.prompt_tokens + last.completion_tokens <= 256 and text


async def test_a_dead_child_is_unavailable_and_reported(smollm_gguf):
    engine = LlamaCppEngine("smollm2", smollm_gguf, context_length=256, settings=LlamaCppSettings())
    exits = []
    await engine.start()
    engine.on_exit = lambda: exits.append(1)
    try:
        assert engine.child.process is not None
        engine.child.process.kill()
        await engine.child.process.wait()
        with pytest.raises(EngineUnavailableError):
            await anext(engine.generate(GenerationRequest(prompt="hi", max_tokens=1)))
        assert exits
    finally:
        await engine.close()


async def test_a_configured_llama_server_binary_is_used(tmp_path, smollm_gguf):
    binary = tmp_path / "llama-server"
    binary.write_text(FAKE_LLAMA_SERVER)
    binary.chmod(0o755)
    settings = LlamaCppSettings(binary=str(binary))
    engine = LlamaCppEngine(
        "smollm2", smollm_gguf, context_length=128, settings=settings, prompt_cache_bytes=3 << 20
    )
    await engine.start()
    try:
        assert engine.info.context_length == 128
        _, last = await run(engine, GenerationRequest(prompt="The capital of France is", max_tokens=2))
        assert last.completion_tokens == 2
    finally:
        await engine.close()
    assert not engine.child.alive


def child_rss_mib(engine: LlamaCppEngine) -> float:
    assert engine.child.process is not None
    return processes()[engine.child.process.pid][1] / 2**20


async def test_the_childs_ram_prompt_cache_stays_within_the_prompt_cache_bound(smollm_gguf):
    # One slot: each new prompt evicts the last one's KV, which llama.cpp then keeps in RAM (~15 MiB for
    # these ~700 tokens), up to 8 GiB by default. Measured, the child's RSS over these 8 prompts: +123 MiB
    # without --cache-ram (+370 MiB over 24), +31 MiB bounded at 16 MiB.
    settings = LlamaCppSettings(parallel=1)
    engine = LlamaCppEngine(
        "smollm2", smollm_gguf, context_length=2048, settings=settings, prompt_cache_bytes=16 << 20
    )
    await engine.start()
    try:
        await run(engine, GenerationRequest(prompt="warm up", max_tokens=1))
        before = child_rss_mib(engine)
        words = [
            "apple",
            "river",
            "stone",
            "cloud",
            "music",
            "paper",
            "light",
            "green",
            "winter",
            "table",
            "ocean",
            "forest",
        ]
        for seed in range(8):
            prompt = " ".join(words[(seed * 7 + i * i) % len(words)] for i in range(700))
            _, last = await run(engine, GenerationRequest(prompt=f"{seed} {prompt}", max_tokens=1))
            assert last.prompt_tokens > 600
        grown = child_rss_mib(engine) - before
        assert grown < 16 + 40, f"the child grew {grown:.0f} MiB"
    finally:
        await engine.close()


async def test_special_token_text_in_messages_is_text_unless_parse_special(engine, smollm_gguf):
    """The chat prompt goes through /completion with the user's `<|im_start|>` as text token ids;
    `parse_special = true` (the models.toml switch) makes it the control token again."""

    async def prompt_tokens(target, content: str) -> int:
        request = GenerationRequest(messages=[ChatMessage("user", content)], max_tokens=1, sampling=GREEDY)
        return (await run(target, request))[1].prompt_tokens

    plain = await prompt_tokens(engine, "Say A")
    assert await prompt_tokens(engine, "Say A<|im_start|>") - plain == 7
    settings = LlamaCppSettings(cache_prompt=False, parallel=1)
    special = LlamaCppEngine("smollm2", smollm_gguf, context_length=256, settings=settings)
    special.parse_special = True
    await special.start()
    try:
        assert await prompt_tokens(special, "Say A<|im_start|>") - plain == 1
    finally:
        await special.close()


def test_an_encoder_child_keeps_the_files_pooling_and_fits_each_input_in_a_micro_batch(monkeypatch):
    from radis_mlx.engines.llamacpp.encoder import LlamaCppEncoderEngine
    from radis_mlx.engines.llamacpp.encoder_model import EncoderModel
    from radis_mlx.engines.llamacpp.server import quiet_openmp

    monkeypatch.delenv("RADIS_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    engine = LlamaCppEncoderEngine(
        "e",
        Path("m"),
        kind="embedding",
        context_length=None,
        settings=LlamaCppSettings(),
        max_batch=16,
        truncate=True,
        cache_dir=Path("c"),
    )
    engine._model = EncoderModel(Path("m.gguf"), "embedding", "unspecified", True, 1024, None)
    args = parse_args(engine.child_argv(9)[3:])
    assert (args.embedding, args.pooling, args.parallel, args.ubatch) == (True, "unspecified", 16, 1024)
    assert args.ctx_size == 16 * 1024 and args.cache_ram == 0
    binary = llama_server_argv("/bin/llama-server", args)
    assert "--pooling" not in binary  # the GGUF's own
    assert binary[binary.index("--ubatch-size") + 1] == binary[binary.index("--batch-size") + 1] == "1024"
    # A causal embedder keeps a KV cache: its slots share a bounded context (32k tokens).
    engine._model = EncoderModel(Path("m.gguf"), "embedding", "mean", True, 8192, None, causal=True)
    causal = parse_args(engine.child_argv(9)[3:])
    assert (causal.parallel, causal.ctx_size, causal.ubatch) == (4, 32768, 8192)
    rank = llama_server_argv(
        "/bin/llama-server", parse_args(["--model", "m", "--port", "9", "--embedding", "--pooling", "cls"])
    )
    assert rank[rank.index("--pooling") + 1] == "cls"
    # Encoder children wait passively at OpenMP barriers (docs/BENCHMARKS.md); LLM children keep the default.
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_openmp(parse_args(["--model", "m", "--port", "9"]))
    assert "OMP_WAIT_POLICY" not in os.environ
    quiet_openmp(args)
    assert os.environ["OMP_WAIT_POLICY"] == "passive"
