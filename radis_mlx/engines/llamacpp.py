"""GGUF models on llama.cpp: its own HTTP server in a supervised child, proxied over loopback.

All llama.cpp-facing JSON lives here. A generation is one streamed POST /completion (chat
messages are first templated by the child's /apply-template, with the GGUF's jinja template), so
the text is exactly what the model produced and the counts are llama.cpp's own.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from radis_mlx.config import LlamaCppSettings
from radis_mlx.engines.base import Engine, EngineInfo, GenerationChunk, GenerationRequest, SamplingParams
from radis_mlx.engines.stops import StopBuffer
from radis_mlx.engines.supervisor import ChildProcess
from radis_mlx.errors import (
    ContextLengthExceeded,
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
    RadisError,
)

log = logging.getLogger(__name__)

# mlx-lm's penalties look at the last 20 tokens; llama.cpp's window is repeat_last_n.
PENALTY_WINDOW = 20
_FINISH = {"eos": "stop", "word": "stop", "limit": "length"}


class _Progress(msgspec.Struct):
    total: int = 0


class _Chunk(msgspec.Struct):
    """One streamed /completion event (llama.cpp sends many more fields; we skip them)."""

    content: str = ""
    stop: bool = False
    stop_type: str = ""
    tokens_predicted: int = 0
    tokens_evaluated: int = 0
    prompt_progress: _Progress | None = None


class _Meta(msgspec.Struct):
    n_vocab: int
    n_ctx: int
    n_ctx_train: int
    size: int = 0


class _ModelCard(msgspec.Struct):
    meta: _Meta


class _Models(msgspec.Struct):
    data: list[_ModelCard]


class _ErrorBody(msgspec.Struct):
    message: str = ""
    type: str = ""
    n_prompt_tokens: int = 0
    n_ctx: int = 0


class _Error(msgspec.Struct):
    error: _ErrorBody


def find_llama_server(settings: LlamaCppSettings) -> str | None:
    """A configured or installed `llama-server` binary, if there is one."""
    configured = settings.binary or os.environ.get("RADIS_LLAMA_SERVER")
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if found is None:
            raise ModelLoadError(f"llama-server binary not found: {configured}")
        return found
    return shutil.which("llama-server")


class LlamaCppEngine(Engine):
    """One GGUF model served by a llama.cpp child process."""

    # Set by the pool: called when the child dies on its own, so the model is marked unloaded.
    on_exit: Callable[[], None] | None = None

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        context_length: int | None,
        settings: LlamaCppSettings,
        embedding: bool = False,
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.settings = settings
        self.embedding = embedding
        self.info = EngineInfo(name="llamacpp", context_length=context_length or 0)
        self.child = ChildProcess(f"llama.cpp[{model_id}]", on_exit=self._child_exited)
        self._client: httpx.AsyncClient | None = None
        self._vocab = 0

    def worker_argv(self, port: int) -> list[str]:
        """The command that starts our child on a port."""
        s = self.settings
        argv = [sys.executable, "-m", "radis_mlx.engines.llamacpp_worker", "--model", str(self.path)]
        argv += ["--port", str(port), "--parent-pid", str(os.getpid())]
        argv += ["--ctx-size", str(self.info.context_length), "--parallel", str(s.parallel)]
        argv += ["--threads", str(s.threads or 0), "--gpu-layers", str(s.gpu_layers)]
        argv += ["--embedding"] if self.embedding else []
        argv += [] if s.jinja else ["--no-jinja"]
        binary = find_llama_server(s)
        return [*argv, "--exec", binary] if binary else argv

    async def start(self) -> None:
        await self.child.start(self.worker_argv, timeout=self.settings.start_timeout)
        # No pool limits: every parallel slot of the child may be streaming at once.
        self._client = httpx.AsyncClient(
            base_url=self.child.base_url,
            timeout=httpx.Timeout(30.0, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        try:
            response = await self._client.get("/v1/models")
            meta = msgspec.json.decode(response.content, type=_Models).data[0].meta
        except (httpx.HTTPError, msgspec.DecodeError, IndexError) as exc:
            await self.close()
            raise ModelLoadError(f"llama.cpp did not describe {self.path.name}: {exc}") from exc
        self._vocab = meta.n_vocab
        # llama.cpp pads n_ctx up (to 256); the configured limit stays the one we enforce.
        configured = self.info.context_length or meta.n_ctx
        self.info.context_length = min(configured, meta.n_ctx, meta.n_ctx_train)
        self.info.size_bytes = meta.size or self.path.stat().st_size
        self.info.details = {"format": "gguf", "pid": str(self.child.pid), "port": str(self.child.port)}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        await self.child.stop()

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_token_ids(tokens, "prompt")
        reply = await self._post("/detokenize", {"tokens": tokens})
        return str(reply["content"])

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        prompt = await self._prompt(request)
        self._check_token_ids(list(request.sampling.logit_bias), "logit_bias")
        body = {**_sampling(request.sampling), "prompt": prompt, "stop": request.stop}
        body.update(n_predict=-1 if request.max_tokens is None else request.max_tokens)
        body.update(stream=True, cache_prompt=self.settings.cache_prompt, return_progress=True)
        param = "messages" if request.messages is not None else "prompt"
        stops = StopBuffer(request.stop)
        client = self._require_client()
        try:
            async with client.stream("POST", "/completion", json=body) as response:
                if response.status_code != 200:
                    raise _child_error(response.status_code, await response.aread(), param)
                checked = False
                async for line in response.aiter_lines():
                    if line.startswith("error:"):
                        raise _child_error(500, line[6:].encode(), param)
                    if not line.startswith("data: "):
                        continue
                    chunk = msgspec.json.decode(line[6:], type=_Chunk)
                    if not checked:
                        # The first event names the prompt's length before any of it is evaluated.
                        self._check_room(chunk, request.max_tokens, param)
                        checked = True
                    if chunk.stop:
                        text = stops.feed(chunk.content)
                        text += stops.flush()
                        finish = "stop" if stops.stopped else _FINISH.get(chunk.stop_type, "stop")
                        yield GenerationChunk(text, finish, chunk.tokens_evaluated, chunk.tokens_predicted)
                        return
                    if text := stops.feed(chunk.content):
                        yield GenerationChunk(text)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        raise self._unavailable(None)

    def _check_room(self, chunk: _Chunk, max_tokens: int | None, param: str) -> None:
        prompt_tokens = chunk.prompt_progress.total if chunk.prompt_progress else chunk.tokens_evaluated
        if prompt_tokens == 0:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        room = self.info.context_length - prompt_tokens
        wanted = room if max_tokens is None else max_tokens
        if room <= 0 or wanted > room:
            raise _context_error(self.info.context_length, prompt_tokens, wanted, param)

    async def _prompt(self, request: GenerationRequest) -> str | list[int]:
        if request.messages is None:
            if isinstance(request.prompt, list):
                self._check_token_ids(request.prompt, "prompt")
            return request.prompt or ""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        reply = await self._post("/apply-template", {"messages": messages})
        return str(reply["prompt"])

    def _check_token_ids(self, tokens: list[int], param: str) -> None:
        bad = next((t for t in tokens if not 0 <= t < self._vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"token id {bad} is outside the vocabulary (0..{self._vocab - 1})", param=param
            )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._require_client().post(path, json=body)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.status_code != 200:
            raise _child_error(response.status_code, response.content, "prompt")
        reply: dict[str, Any] = response.json()
        return reply

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None or not self.child.alive:
            raise self._unavailable(None)
        return self._client

    def _unavailable(self, exc: BaseException | None) -> EngineUnavailableError:
        if not self.child.alive and self.on_exit is not None:
            self.on_exit()  # the watcher may not have run yet; the pool must still hear of it
        detail = f" ({type(exc).__name__})" if exc else ""
        return EngineUnavailableError(
            f"the llama.cpp process serving '{self.model_id}' stopped{detail}; "
            "it restarts on the next request"
        )

    def _child_exited(self, code: int, stderr_tail: str) -> None:
        if self.on_exit is not None:
            self.on_exit()


def _sampling(params: SamplingParams) -> dict[str, Any]:
    """Our sampling fields in llama.cpp's names; samplers we do not expose are switched off."""
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "min_p": params.min_p,
        "typical_p": 1.0,
        "dry_multiplier": 0.0,
        "xtc_probability": 0.0,
        "seed": -1 if params.seed is None else params.seed,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "repeat_penalty": params.repetition_penalty,
        "repeat_last_n": PENALTY_WINDOW,
        "logit_bias": [[token, bias] for token, bias in params.logit_bias.items()],
    }


def _context_error(context: int, prompt: int, completion: int, param: str) -> ContextLengthExceeded:
    return ContextLengthExceeded(
        f"This model's maximum context length is {context} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the {param}, {completion} in the completion).",
        param=param,
    )


def _child_error(status: int, content: bytes, param: str) -> RadisError:
    """llama.cpp's error body as one of ours."""
    try:
        error = msgspec.json.decode(content, type=_Error).error
    except msgspec.DecodeError:
        error = _ErrorBody(message=content.decode(errors="replace")[:500])
    if error.type == "exceed_context_size_error":
        return _context_error(error.n_ctx, error.n_prompt_tokens, 0, param)
    if "invalid token" in error.message.lower():
        return InvalidRequestError(error.message, param="prompt")
    if status == 503:
        return EngineUnavailableError(f"llama.cpp is not ready: {error.message}")
    if 400 <= status < 500:
        return InvalidRequestError(f"llama.cpp rejected the request: {error.message}", param=param)
    return EngineError(f"llama.cpp failed: {error.message}")
