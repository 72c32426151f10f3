"""The child process behind the llama.cpp engine: llama.cpp's own HTTP server for one GGUF model.

Run as `python -m radis_mlx.engines.llamacpp.server --model PATH --port N ...`. It hosts the
`xllamacpp` wheel's server, or with `--exec` replaces itself with a `llama-server` binary. Either
way it first arranges to die with its parent, so a killed radis-mlx never leaves a child behind.
Only this process imports xllamacpp; the server process never does.

Its API key comes in $LLAMA_API_KEY (llama-server reads it there itself; never argv, which `ps`
shows): every endpoint but /health then wants it, so only radis-mlx can use the child.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

from radis_mlx.engines.child.watchdog import die_with_parent, watch_parent

API_KEY_ENV = "LLAMA_API_KEY"


def llama_server_argv(binary: str, args: argparse.Namespace) -> list[str]:
    """The `llama-server` command line for the same settings the wheel gets."""
    argv = [binary, "--model", args.model, "--host", "127.0.0.1", "--port", str(args.port)]
    argv += ["--ctx-size", str(args.ctx_size), "--parallel", str(args.parallel), "--kv-unified"]
    argv += ["--n-gpu-layers", str(args.gpu_layers), "--no-webui"]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.embedding:
        argv += ["--embedding"] + ([] if args.pooling == "unspecified" else ["--pooling", args.pooling])
    if args.ubatch:
        argv += ["--ubatch-size", str(args.ubatch), "--batch-size", str(args.ubatch)]
    argv.append("--jinja" if args.jinja else "--no-jinja")
    argv += [] if args.flash_attn else ["--flash-attn", "off"]
    if args.chat_template:
        argv += ["--chat-template", args.chat_template]
    if args.mmproj:
        argv += ["--mmproj", args.mmproj]
    if args.cache_ram is not None and supports_flag(binary, "--cache-ram"):
        argv += ["--cache-ram", str(args.cache_ram)]
    return argv


def supports_flag(binary: str, flag: str) -> bool:
    """Whether `binary --help` lists a flag: a llama-server built before it would refuse to start."""
    try:
        shown = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return flag in shown.stdout + shown.stderr


def serve_with_wheel(args: argparse.Namespace) -> None:
    """Host llama.cpp's server from the xllamacpp wheel until we are terminated."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    # One KV cache shared by the slots: each request may use the whole context (as on MLX).
    params.kv_unified = True
    params.n_gpu_layers = args.gpu_layers
    params.embedding = args.embedding
    params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{args.pooling.upper()}")
    if args.ubatch:
        # An encoder sees each input whole in one micro-batch: n_ubatch bounds the longest input.
        params.n_ubatch = params.n_batch = args.ubatch
    params.use_jinja = args.jinja
    if args.chat_template:
        params.chat_template = args.chat_template
    if args.mmproj:
        params.mmproj.path = args.mmproj  # a vision model's projector: images in chat and /completion
    params.cache_prompt = True
    if args.cache_ram is not None:
        params.cache_ram_mib = args.cache_ram
    if not args.flash_attn:
        params.flash_attn_type = 0  # off (-1: auto); see LlamaCppSettings.flash_attn
    params.ui = False
    key = os.environ.get(API_KEY_ENV)
    if key:
        params.api_keys = [key]
    if hasattr(params, "cors_origins"):
        # No browser origin may read the child's answers (llama.cpp's default allows any).
        params.cors_origins, params.cors_origins_explicit, params.cors_credentials = "", True, False
    if args.threads:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    try:
        server = xllamacpp.Server(params)  # listens while this object lives
    except RuntimeError as exc:
        # llama.cpp has logged the cause just above; the supervisor shows that tail.
        sys.exit(f"llama.cpp server did not start: {exc}")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        threading.Event().wait()
    finally:
        del server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The child's command line."""
    parser = argparse.ArgumentParser(prog="python -m radis_mlx.engines.llamacpp.server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx-size", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--gpu-layers", type=int, default=0)
    # MiB of evicted slots' prompts kept in RAM (0: none); unset: llama.cpp's default (8 GiB).
    parser.add_argument("--cache-ram", type=int)
    parser.add_argument("--embedding", action="store_true")
    # Mean pooling: what an LLM entry's embeddings are on MLX too (llama.cpp's default is none);
    # "unspecified": the GGUF's own (an encoder's); "rank": a reranker's head (llama-server's --reranking).
    parser.add_argument(
        "--pooling", choices=["unspecified", "none", "mean", "cls", "last", "rank"], default="mean"
    )
    parser.add_argument("--ubatch", type=int, default=0, help="n_ubatch = n_batch (0: llama.cpp's)")
    parser.add_argument("--no-jinja", dest="jinja", action="store_false")
    parser.add_argument("--no-flash-attn", dest="flash_attn", action="store_false")
    parser.add_argument("--chat-template", help="a Jinja chat template replacing the GGUF's own")
    parser.add_argument("--mmproj", help="a vision model's projector GGUF (images in)")
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--exec", dest="binary", help="run this llama-server binary instead of the wheel")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point: tie our life to the parent's, then serve."""
    args = parse_args(argv)
    die_with_parent(args.parent_pid)
    quiet_openmp(args)
    if args.binary:
        # PDEATHSIG survives exec, so the binary still dies with radis-mlx.
        argv_exec = llama_server_argv(args.binary, args)
        os.execv(argv_exec[0], argv_exec)
    watch_parent(args.parent_pid)
    serve_with_wheel(args)


def quiet_openmp(args: argparse.Namespace) -> None:
    """Encoder children: ggml's OpenMP threads sleep at barriers instead of spinning (docs/BENCHMARKS.md).

    Read by OpenMP when it starts, so set before xllamacpp loads (and inherited by an exec'd binary).
    """
    if args.embedding:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")


if __name__ == "__main__":
    main()
