"""models.toml plus CLI/env overrides, decoded into strict msgspec Structs, merged here and nowhere else.

Which models.toml: `config_path` decides: --config, $RADIS_MLX_CONFIG, ./models.toml, then the user's
`${XDG_CONFIG_HOME:-~/.config}/radis-mlx/models.toml` (macOS too), created by `serve` from the starter.
Every `RADIS_*` variable is read here: RADIS_MLX_CONFIG, RADIS_API_KEY (keys, comma-separated),
RADIS_MLX_CACHE (the model cache), RADIS_MLX_KV_DIR (prompt-cache files), RADIS_LLAMA_SERVER (a
llama-server binary); the CLI's options go through `with_overrides`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta, Struct

DEFAULT_CONFIG_NAME = "models.toml"
APP_DIR_NAME = "radis-mlx"
STARTER_RESOURCE = "starter.toml"  # the starter models.toml inside the package
ENV_CONFIG = "RADIS_MLX_CONFIG"
ENV_XDG_CONFIG = "XDG_CONFIG_HOME"
ENV_API_KEY = "RADIS_API_KEY"
ENV_CACHE = "RADIS_MLX_CACHE"
ENV_KV = "RADIS_MLX_KV_DIR"
ENV_LLAMA_SERVER = "RADIS_LLAMA_SERVER"

EngineName = Literal["auto", "mlx", "llamacpp"]
ModelKind = Literal["llm", "vlm", "embedding", "rerank"]  # vlm: reads images too (also found from its files)
ENCODER_KINDS = ("embedding", "rerank")  # kinds that encode (embeddings, scores) and never generate
# A fim_template names both placeholders, in either order (Codestral puts the suffix first).
_FIM_PLACEHOLDERS = r"\{prefix\}[\s\S]*\{suffix\}|\{suffix\}[\s\S]*\{prefix\}"


class SamplingDefaults(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Per-model defaults used where a request leaves a field out: sampling, stop strings, a system prompt."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Meta(gt=0)] | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    stop: list[str] | None = None  # these two for requests that send none (an Ollama model's stop, SYSTEM)
    system: str | None = None


class ReasoningMarkers(Struct, forbid_unknown_fields=True):
    """A model's own reasoning markers, e.g. {start = "<reasoning>", end = "</reasoning>"}."""

    start: Annotated[str, Meta(min_length=1)]
    end: Annotated[str, Meta(min_length=1)]


ReasoningSetting = Literal["auto", "none", "think", "mistral", "gemma4", "harmony"] | ReasoningMarkers


class DistributedSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """A model sharded across mx.distributed ranks started with mlx.launch (docs/DISTRIBUTED.md)."""

    # mlx.launch's JSON hostfile (relative to this file's folder); its first host must be this machine.
    hosts: str | None = None
    ranks: Annotated[int, Meta(ge=2)] | None = None  # or this many on 127.0.0.1 (one machine: testing)
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
    mmproj: str | None = None  # a GGUF's vision projector (a source); unset: an mmproj beside it that fits
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
    parse_special: bool = False  # true: `<|im_start|>` typed in a message is that control token, not text
    # Reasoning: the format ("auto": from the chat template, "none", a family, or {start, end} markers) and a
    # default budget in tokens (a request's own wins). generation/reasoning.py has the families.
    reasoning: ReasoningSetting = "auto"
    reasoning_budget: Annotated[int, Meta(ge=0)] | None = None
    # Over [server]'s: Anthropic usage scaled to this window (for Claude Code; see ServerSettings).
    anthropic_usage_window: Annotated[int, Meta(ge=1)] | None = None
    # Embedding and rerank entries (kind = "embedding" / "rerank"):
    max_batch: Annotated[int, Meta(ge=1)] = 32  # inputs per forward pass (llama.cpp: the child's slots)
    max_inputs: Annotated[int, Meta(ge=1)] = 2048  # inputs (documents) per request, as OpenAI caps them
    truncate: bool = True  # inputs (a pair's document) over the model's length: cut (true) or 400 (false)
    matryoshka: bool = False  # `dimensions` below the model's size allowed (truncate, re-normalize)
    embeddings: bool = False  # LLM entries: also serve /v1/embeddings (mean-pooled last hidden state)
    # Pool: idle seconds before unloading (over [pool] ttl), never evicted, loaded at startup, other names.
    ttl: Annotated[int, Meta(ge=1)] | None = None
    pinned: bool = False
    preload: bool = False
    aliases: list[str] = msgspec.field(default_factory=list)
    distributed: DistributedSettings | None = None  # MLX LLMs sharded over processes or Macs
    # LLMs: the prompt cache's bounds (RAM MiB, also llama.cpp's --cache-ram; disk GiB) over [pool]'s.
    prompt_cache_mib: Annotated[int, Meta(ge=0)] | None = None
    prompt_cache_disk_gib: Annotated[float, Meta(ge=0)] | None = None
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
    jinja: bool = True  # the GGUF's own chat template on llama.cpp's jinja engine (as MLX's transformers)
    # Reuse a slot's KV cache for a shared prompt prefix (cached_tokens in usage); on, as llama-server has
    # it. The price: a cached prefix can flip a greedy near-tie (CPU kernels are not batch-invariant).
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
    api_key_file: str | None = None  # keys one a line, relative to this file (out of argv: `ps` shows it)
    cors_origins: list[str] = msgspec.field(default_factory=list)  # CORS origins; ["*"]: any; empty: off
    # Host names accepted besides localhost while bound to loopback (DNS-rebinding guard).
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 4 * 1024 * 1024
    # A generation running longer than this ends with 408 (or an error event when streaming).
    request_timeout: Annotated[float, Meta(gt=0)] = 600.0
    stream_grace: Annotated[float, Meta(ge=0)] = 1.5  # first token awaited, then `: keep-alive` comments
    keepalive_interval: Annotated[float, Meta(gt=0)] = 5.0
    send_timeout: Annotated[float, Meta(gt=0)] = 30.0  # a client reading nothing this long is cut off
    send_buffer_kib: Annotated[int, Meta(ge=4, le=65536)] = 256  # unread response kept, server and kernel
    # Claude Code only (it assumes 200k, compacts near ~167k): Anthropic usage scaled to this window.
    anthropic_usage_window: Annotated[int, Meta(ge=1)] | None = None
    max_images: Annotated[int, Meta(ge=0)] = 16  # per request; next, their decoded pixels in all
    max_image_pixels: Annotated[int, Meta(ge=1)] = 32 * 2**20
    fetch_image_urls: bool = False  # http(s) image URLs fetched (api/image_fetch.py: public hosts only)
    ollama_version: str = "0.12.0"  # GET /api/version's answer (Ollama clients gate on it; Copilot: >= 0.6.4)


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
    discover_lmstudio: bool = True  # serve LM Studio's and Ollama's downloaded models, read-only
    discover_ollama: bool = True
    # Per model: KV of finished requests reused by prompts sharing a prefix (in the memory budget; 0: off).
    prompt_cache_mib: Annotated[int, Meta(ge=0)] = 256
    # Under it: KV files on disk (in prompt_cache_dir, default <cache>/kv), kept over restarts; 0: off.
    prompt_cache_disk_gib: Annotated[float, Meta(ge=0)] = 4.0
    prompt_cache_dir: str | None = None
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

    def prompt_cache_disk_bytes(self, entry: ModelEntry) -> int:
        """The bound of an LLM's prompt-cache files on disk: the entry's setting, else [pool]'s."""
        gib = entry.prompt_cache_disk_gib
        return int((gib if gib is not None else self.pool.prompt_cache_disk_gib) * 2**30)

    @property
    def kv_dir(self) -> Path:
        """Where prompt-cache files live: [pool] prompt_cache_dir, $RADIS_MLX_KV_DIR, else the cache's kv/."""
        configured = self.pool.prompt_cache_dir or os.environ.get(ENV_KV)
        return Path(configured).expanduser() if configured else self.cache_dir / "kv"

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


def load_config(path: Path, text: str | None = None) -> Config:
    """A models.toml (from path, or `text` as if it were there); relative sources resolve to its folder."""
    try:
        raw = path.read_bytes() if text is None else text
        config = msgspec.toml.decode(raw, type=Config)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return msgspec.structs.replace(config, base_dir=str(path.resolve().parent))


class ConfigPath(NamedTuple):
    """The models.toml radis-mlx reads and why that one."""

    path: Path
    reason: str  # "--config", "$RADIS_MLX_CONFIG", "./models.toml" or "user config"

    @property
    def is_user_config(self) -> bool:
        return self.reason == "user config"


def config_path(explicit: Path | None = None) -> ConfigPath:
    """Which models.toml to read: --config, $RADIS_MLX_CONFIG, ./models.toml, else the user config.

    The one place that decides. The user config may not exist yet (`serve` creates it).
    """
    if explicit is not None:
        return ConfigPath(explicit, "--config")
    env = os.environ.get(ENV_CONFIG)
    if env:
        return ConfigPath(Path(env).expanduser(), f"${ENV_CONFIG}")
    local = Path(DEFAULT_CONFIG_NAME)
    if local.is_file():
        return ConfigPath(local, f"./{DEFAULT_CONFIG_NAME}")
    return ConfigPath(user_config_path(), "user config")


def user_config_path() -> Path:
    """${XDG_CONFIG_HOME:-~/.config}/radis-mlx/models.toml, on macOS too (a command-line tool's place)."""
    xdg = os.environ.get(ENV_XDG_CONFIG, "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"  # XDG ignores relative
    return base / APP_DIR_NAME / DEFAULT_CONFIG_NAME


def starter_config() -> str:
    """The starter models.toml shipped in the package: the starter models and every key explained."""
    return resources.files("radis_mlx").joinpath(STARTER_RESOURCE).read_text(encoding="utf-8")


def read_config(explicit: Path | None = None, *, create: bool = False) -> tuple[Config, ConfigPath, bool]:
    """The config config_path chooses, its path and whether it was created now.

    A missing user config is created when `create` is set (serve), else read as the starter it would be
    (ls, pull, config); a missing --config or $RADIS_MLX_CONFIG file is a ConfigError.
    """
    chosen = config_path(explicit)
    created = False
    if chosen.is_user_config and not chosen.path.exists():
        if not create:
            return load_config(chosen.path, starter_config()), chosen, False
        try:
            chosen.path.parent.mkdir(parents=True, exist_ok=True)
            with chosen.path.open("x", encoding="utf-8") as file:  # never overwrites (two servers racing)
                file.write(starter_config())
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot create the user config {chosen.path}: {exc.strerror}") from exc
    return load_config(chosen.path), chosen, created


def split_keys(values: list[str]) -> list[str]:
    """API keys from repeated options and comma-separated lists."""
    return [key.strip() for value in values for key in value.split(",") if key.strip()]


def env_api_keys() -> list[str]:
    """The keys in $RADIS_API_KEY (what a client of the running server sends first, too)."""
    return split_keys([os.environ.get(ENV_API_KEY, "")])


def with_overrides(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    api_keys: list[str] | tuple[str, ...] = (),
    cors_origins: list[str] | tuple[str, ...] = (),
    allowed_hosts: list[str] | tuple[str, ...] = (),
) -> Config:
    """The config with the command line's options and the environment's settings merged in."""
    settings = msgspec.structs.replace(
        config.server,
        host=host or config.server.host,
        port=config.server.port if port is None else port,
        log_level=log_level or config.server.log_level,
        api_keys=[*config.server.api_keys, *split_keys(list(api_keys)), *env_api_keys()],
        cors_origins=[*config.server.cors_origins, *cors_origins],
        allowed_hosts=[*config.server.allowed_hosts, *allowed_hosts],
    )
    return msgspec.structs.replace(config, server=settings, engines=_with_env_engines(config.engines))


def _with_env_engines(engines: EngineSettings) -> EngineSettings:
    binary = engines.llamacpp.binary or os.environ.get(ENV_LLAMA_SERVER) or None
    return msgspec.structs.replace(engines, llamacpp=msgspec.structs.replace(engines.llamacpp, binary=binary))
