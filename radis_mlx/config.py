"""models.toml plus CLI/env overrides, decoded into strict msgspec Structs, merged here and nowhere else.

Every `RADIS_*` variable is read in this module: RADIS_MLX_CONFIG (which models.toml), RADIS_API_KEY
(keys, comma-separated), RADIS_MLX_CACHE (the model cache) and RADIS_LLAMA_SERVER (a llama-server
binary). The CLI passes its options to `with_overrides`; nothing else reads the environment for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

DEFAULT_CONFIG_NAME = "models.toml"
ENV_CONFIG = "RADIS_MLX_CONFIG"
ENV_API_KEY = "RADIS_API_KEY"
ENV_CACHE = "RADIS_MLX_CACHE"
ENV_LLAMA_SERVER = "RADIS_LLAMA_SERVER"

EngineName = Literal["auto", "mlx", "llamacpp"]
ModelKind = Literal["llm", "embedding"]
# A fim_template names both placeholders, in either order (Codestral puts the suffix first).
_FIM_PLACEHOLDERS = r"\{prefix\}[\s\S]*\{suffix\}|\{suffix\}[\s\S]*\{prefix\}"


class SamplingDefaults(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Per-model defaults used where a request leaves a sampling field out."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Meta(gt=0)] | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None


class DistributedSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """A model sharded across mx.distributed ranks started with mlx.launch (docs/DISTRIBUTED.md)."""

    # mlx.launch's JSON hostfile (relative to this file's folder); its first host must be this machine.
    hosts: str | None = None
    # Or this many ranks on 127.0.0.1 (a single-machine group: for testing).
    ranks: Annotated[int, Meta(ge=2)] | None = None
    strategy: Literal["tensor", "pipeline"] = "pipeline"
    backend: Literal["ring", "jaccl", "mpi"] = "ring"
    start_timeout: Annotated[float, Meta(gt=0)] = 180.0

    def __post_init__(self) -> None:
        if (self.hosts is None) == (self.ranks is None):
            raise ValueError("distributed needs exactly one of `hosts` (a hostfile) or `ranks`")


class ModelEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    """One servable model: where its files come from and how to run them."""

    source: str
    kind: ModelKind = "llm"
    engine: EngineName = "auto"
    context_length: Annotated[int, Meta(ge=16)] | None = None
    defaults: SamplingDefaults = msgspec.field(default_factory=SamplingDefaults)
    description: str = ""
    # A Jinja chat template (the text) used instead of the model's own, on every engine; it also decides
    # the tool-call format (a template that renders `tools` and `<tool_call>` gets native tool calls).
    chat_template: str | None = None
    # Completions' `suffix` (fill-in-the-middle): the prompt as text with `{prefix}` and `{suffix}`, e.g.
    # "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"; unset: found from the model's FIM tokens.
    fim_template: Annotated[str, Meta(pattern=_FIM_PLACEHOLDERS)] | None = None
    # true: special-token text inside chat messages (`<|im_start|>`) becomes control tokens, as it used to;
    # false (default): it is text, and only the chat template's own markers are control tokens.
    parse_special: bool = False
    # Embedding entries (kind = "embedding"):
    max_batch: Annotated[int, Meta(ge=1)] = 32  # inputs per forward pass
    max_inputs: Annotated[int, Meta(ge=1)] = 2048  # inputs per request, as OpenAI caps them
    truncate: bool = True  # inputs over the model's length: cut (true) or 400 (false)
    matryoshka: bool = False  # `dimensions` below the model's size allowed (truncate, re-normalize)
    # LLM entries: also serve /v1/embeddings (mean-pooled last hidden state).
    embeddings: bool = False
    # Pool: idle seconds before unloading (over [pool] ttl), never evicted, loaded at startup, other names.
    ttl: Annotated[int, Meta(ge=1)] | None = None
    pinned: bool = False
    preload: bool = False
    aliases: list[str] = msgspec.field(default_factory=list)
    # MLX LLMs: shard the model across several processes or Macs (engine "mlx-distributed").
    distributed: DistributedSettings | None = None
    # LLMs: the prompt cache's bound in MiB, over [pool] prompt_cache_mib (0: off); llama.cpp's --cache-ram.
    prompt_cache_mib: Annotated[int, Meta(ge=0)] | None = None
    # Backpressure, over [pool]'s: requests in service at once, requests waiting, seconds a request may wait.
    max_concurrent: Annotated[int, Meta(ge=1)] | None = None
    max_queue: Annotated[int, Meta(ge=0)] | None = None
    queue_timeout: Annotated[float, Meta(gt=0)] | None = None

    @property
    def serves_embeddings(self) -> bool:
        """Whether /v1/embeddings may use this entry."""
        return self.kind == "embedding" or self.embeddings


class LlamaCppSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """How llama.cpp children are started."""

    binary: str | None = None
    threads: Annotated[int, Meta(ge=1)] | None = None
    parallel: Annotated[int, Meta(ge=1)] = 4
    gpu_layers: int = 0
    # Apply the GGUF's own chat template with llama.cpp's jinja engine (as MLX does through transformers).
    jinja: bool = True
    # Reuse a slot's KV cache for a shared prompt prefix (multi-turn chat, agents): only the new suffix is
    # evaluated, and usage.prompt_tokens_details.cached_tokens counts the reused tokens. On, as llama-server
    # has it: off, the child also spends ~75 ms clearing the slot per request. The price: a cached prefix
    # can flip a greedy near-tie (CPU flash attention is not batch-invariant, docs/BENCHMARKS.md).
    cache_prompt: bool = True
    flash_attn: bool = True  # llama.cpp's own choice ("auto"); false: off
    start_timeout: Annotated[float, Meta(gt=0)] = 60.0


class EngineSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    llamacpp: LlamaCppSettings = msgspec.field(default_factory=LlamaCppSettings)


class ServerSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 1234
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cache_dir: str | None = None
    # Empty: no key needed. Otherwise every /v1 route needs one of these (also from $RADIS_API_KEY).
    api_keys: list[str] = msgspec.field(default_factory=list)
    # A file of keys (one a line, # comments), relative to this file's folder: keys out of models.toml
    # and out of the command line (which `ps` shows to every user); also --api-key-file.
    api_key_file: str | None = None
    # Origins allowed by CORS; empty keeps CORS off. ["*"] allows any origin.
    cors_origins: list[str] = msgspec.field(default_factory=list)
    # Host names accepted besides localhost while bound to loopback (DNS-rebinding guard).
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 4 * 1024 * 1024
    # A generation running longer than this ends with 408 (or an error event when streaming).
    request_timeout: Annotated[float, Meta(gt=0)] = 600.0
    # A stream waits this long for its first token before starting the response (errors until then are
    # HTTP errors); after that, and whenever output pauses, a `: keep-alive` comment every keepalive_interval.
    stream_grace: Annotated[float, Meta(ge=0)] = 1.5
    keepalive_interval: Annotated[float, Meta(gt=0)] = 5.0
    # A client that reads nothing of its response for this long is disconnected (its slot freed); the
    # server, and the kernel (x2 on Linux), each buffer at most send_buffer_kib of a connection's unread
    # response (the kernel's own autotuning would let it grow to MBs before a send has to wait).
    send_timeout: Annotated[float, Meta(gt=0)] = 30.0
    send_buffer_kib: Annotated[int, Meta(ge=4, le=65536)] = 256


class PoolSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """How many models stay loaded, for how long, and where models are discovered."""

    # Unset: MLX's recommended working set on Apple Silicon, else 75% of RAM.
    memory_budget_gib: Annotated[float, Meta(gt=0)] | None = None
    # Idle seconds before a model is unloaded; unset keeps models until memory is needed.
    ttl: Annotated[int, Meta(ge=1)] | None = None
    # Folders searched (recursively) for GGUF files, each served under its file stem.
    model_dirs: list[str] = msgspec.field(default_factory=list)
    # Serve MLX-format repos found in the Hugging Face cache ($HF_HUB_CACHE, ~/.cache/huggingface/hub).
    discover_hf_cache: bool = True
    # Per MLX model: KV caches of finished requests kept for reuse by prompts sharing their prefix
    # (multi-turn chats, agents); counted in the model's memory. 0 turns the prompt cache off.
    prompt_cache_mib: Annotated[int, Meta(ge=0)] = 256
    # Backpressure per model: requests in service at once (unset: llama.cpp's `parallel` slots, 32 on MLX);
    # beyond that up to max_queue wait (more → 429), each at most queue_timeout seconds (then 503).
    max_concurrent: Annotated[int, Meta(ge=1)] | None = None
    max_queue: Annotated[int, Meta(ge=0)] = 64
    queue_timeout: Annotated[float, Meta(gt=0)] = 120.0


class Config(Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole configuration; passed into create_app, never read from globals."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    engines: EngineSettings = msgspec.field(default_factory=EngineSettings)
    pool: PoolSettings = msgspec.field(default_factory=PoolSettings)
    models: dict[str, ModelEntry] = msgspec.field(default_factory=dict)
    # The folder relative sources are resolved against (the config file's folder).
    base_dir: str = "."

    def prompt_cache_bytes(self, entry: ModelEntry) -> int:
        """The bound of an LLM's prompt cache: the entry's setting, else [pool]'s."""
        mib = entry.prompt_cache_mib if entry.prompt_cache_mib is not None else self.pool.prompt_cache_mib
        return mib * 2**20

    @property
    def cache_dir(self) -> Path:
        """Where downloaded and converted models live (~/.cache/radis-mlx unless configured)."""
        configured = self.server.cache_dir or os.environ.get(ENV_CACHE)
        return Path(configured).expanduser() if configured else Path.home() / ".cache" / "radis-mlx"


class ConfigError(Exception):
    """models.toml cannot be read or does not match the schema."""


def load_config(path: Path | None) -> Config:
    """Read a models.toml (or return an empty Config when path is None)."""
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        config = msgspec.toml.decode(raw, type=Config)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return msgspec.structs.replace(config, base_dir=str(path.resolve().parent))


def config_path(explicit: Path | None = None) -> Path | None:
    """Which models.toml to read: --config, else $RADIS_MLX_CONFIG, else ./models.toml; None: none exists."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.exists() else None


def split_keys(values: list[str]) -> list[str]:
    """API keys from repeated options and comma-separated lists."""
    return [key.strip() for value in values for key in value.split(",") if key.strip()]


def env_api_keys() -> list[str]:
    """The keys in $RADIS_API_KEY (what a client of the running server sends first, too)."""
    return split_keys([os.environ.get(ENV_API_KEY, "")])


def read_key_file(path: Path) -> list[str]:
    """The API keys in a key file: one a line (or comma-separated), blank lines and # comments skipped."""
    try:
        lines = path.expanduser().read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from exc
    return split_keys([line for line in lines if not line.lstrip().startswith("#")])


def file_api_keys(config: Config, extra_file: Path | None = None) -> list[str]:
    """The keys of [server] api_key_file (relative to models.toml's folder) and of `extra_file`."""
    configured = config.server.api_key_file
    files = [Path(config.base_dir) / Path(configured).expanduser() if configured else None, extra_file]
    return [key for file in files if file is not None for key in read_key_file(file)]


def with_overrides(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    api_keys: list[str] | tuple[str, ...] = (),
    api_key_file: Path | None = None,
    cors_origins: list[str] | tuple[str, ...] = (),
    allowed_hosts: list[str] | tuple[str, ...] = (),
) -> Config:
    """The config with the command line's options and the environment's settings merged in.

    Raises ConfigError when a key file cannot be read.
    """
    keys = [*config.server.api_keys, *file_api_keys(config, api_key_file)]
    settings = msgspec.structs.replace(
        config.server,
        host=host or config.server.host,
        port=config.server.port if port is None else port,
        log_level=log_level or config.server.log_level,
        api_keys=[*keys, *split_keys(list(api_keys)), *env_api_keys()],
        cors_origins=[*config.server.cors_origins, *cors_origins],
        allowed_hosts=[*config.server.allowed_hosts, *allowed_hosts],
    )
    return msgspec.structs.replace(config, server=settings, engines=_with_env_engines(config.engines))


def _with_env_engines(engines: EngineSettings) -> EngineSettings:
    binary = engines.llamacpp.binary or os.environ.get(ENV_LLAMA_SERVER) or None
    return msgspec.structs.replace(engines, llamacpp=msgspec.structs.replace(engines.llamacpp, binary=binary))
