"""GGUF models on llama.cpp: its own HTTP server in a supervised child, proxied over loopback.

A generation is one streamed request: chat messages go to the child's /v1/chat/completions
(templated there with the GGUF's jinja template, reasoning left in the text), raw prompts to its
/completion; the text is exactly what the model produced and the counts are llama.cpp's own. The
JSON it speaks lives in protocol.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from radis_mlx.config import LlamaCppSettings
from radis_mlx.engines.base import EngineInfo
from radis_mlx.engines.child.engine import ChildEngine
from radis_mlx.engines.child.stream import ChildConnectionError
from radis_mlx.engines.llamacpp.protocol import (
    Models,
    chat_event,
    child_error,
    completion_event,
    constraint_body,
    sampling_body,
    tokenize_body,
    tokenized,
)
from radis_mlx.engines.llamacpp.server import API_KEY_ENV
from radis_mlx.errors import InvalidRequestError, ModelLoadError
from radis_mlx.generation.chat_template import template_messages, template_tools
from radis_mlx.generation.logprobs import LogprobQueue
from radis_mlx.generation.special_text import escape_specials, has_special_text, split_rendered
from radis_mlx.generation.stops import StopBuffer
from radis_mlx.generation.types import (
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ImageInput,
    Tokenized,
    check_token_ids,
    completion_room,
    request_images,
)
from radis_mlx.store.templates import control_tokens

log = logging.getLogger(__name__)


def find_llama_server(settings: LlamaCppSettings) -> str | None:
    """A configured or installed `llama-server` binary, if there is one."""
    configured = settings.binary  # models.toml's, or $RADIS_LLAMA_SERVER (config.with_overrides)
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if found is None:
            raise ModelLoadError(f"llama-server binary not found: {configured}")
        return found
    return shutil.which("llama-server")


class LlamaCppEngine(ChildEngine):
    """One GGUF model served by a llama.cpp child process."""

    child_noun = "the llama.cpp process"

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        context_length: int | None,
        settings: LlamaCppSettings,
        embedding: bool = False,
        chat_template: str | None = None,
        prompt_cache_bytes: int = 0,
        projector: Path | None = None,
    ) -> None:
        self.model_id = model_id
        self.projector = projector  # a vision model's mmproj: images then go to the child as data: URLs
        if projector is not None:
            self.input_modalities = ("text", "image")
        self.prompt_cache_bytes = prompt_cache_bytes
        self.template_override = chat_template
        self.path = path
        self.settings = settings
        self.embedding = embedding
        self.info = EngineInfo(name="llamacpp", context_length=context_length or 0)
        super().__init__(f"llama.cpp[{model_id}]", connections=settings.parallel)
        self._vocab = 0
        self._llguidance = True  # the xllamacpp wheel has llguidance; a llama-server binary may not
        self._specials: list[str] = []

    def child_argv(self, port: int) -> list[str]:
        """The command that starts our child on a port."""
        s = self.settings
        argv = [sys.executable, "-m", "radis_mlx.engines.llamacpp.server", "--model", str(self.path)]
        argv += ["--port", str(port), "--parent-pid", str(os.getpid())]
        argv += ["--ctx-size", str(self.info.context_length), "--parallel", str(s.parallel)]
        argv += ["--threads", str(s.threads or 0), "--gpu-layers", str(s.gpu_layers)]
        # llama.cpp keeps evicted slots' prompts in RAM up to 8 GiB by default, outside our memory budget:
        # bound it by the prompt cache setting, which the pool counts (rounded down to whole MiB).
        argv += ["--cache-ram", str(self.prompt_cache_bytes // 2**20)]
        argv += ["--embedding"] if self.embedding else []
        argv += [] if s.jinja else ["--no-jinja"]
        argv += [] if s.flash_attn else ["--no-flash-attn"]
        argv += ["--chat-template", self.template_override] if self.template_override else []
        argv += ["--mmproj", str(self.projector)] if self.projector else []
        binary = find_llama_server(s)
        self._llguidance = binary is None
        return [*argv, "--exec", binary] if binary else argv

    async def start(self) -> None:
        # Text that llama.cpp would turn into control tokens: kept as text in messages (special_text.py).
        self._specials = [] if self.parse_special else await asyncio.to_thread(control_tokens, self.path)
        # llama-server reads its API key from LLAMA_API_KEY (the wheel's child passes it on too).
        await self.child.start(self.child_argv, timeout=self.settings.start_timeout, secret_env=API_KEY_ENV)
        # Calls besides the streams (templates, embeddings): as many at once as the child has slots.
        slots = self.settings.parallel
        self._client = self._new_client(
            timeout=httpx.Timeout(30.0, read=None, pool=None),
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
        )
        try:
            response = await self._client.get("/v1/models")
            meta = msgspec.json.decode(response.content, type=Models).data[0].meta
        except (httpx.HTTPError, msgspec.DecodeError, IndexError) as exc:
            await self.close()
            raise ModelLoadError(f"llama.cpp did not describe {self.path.name}: {exc}") from exc
        self._vocab = meta.n_vocab
        # llama.cpp pads n_ctx up (to 256); the configured limit stays the one we enforce.
        configured = self.info.context_length or meta.n_ctx
        self.info.context_length = min(configured, meta.n_ctx, meta.n_ctx_train)
        self.info.size_bytes = meta.size or self.path.stat().st_size
        self.info.details = {"format": "gguf", "pid": str(self.child.pid)}  # no port: only we talk to it

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        if not self.embedding:
            return await super().embed(inputs)
        for tokens in inputs:
            if isinstance(tokens, list):
                self._check_token_ids(tokens, "input")
        reply = await self._post("/v1/embeddings", {"input": inputs, "encoding_format": "float"}, "input")
        data = sorted(reply["data"], key=lambda item: item["index"])
        return EmbeddingResult([item["embedding"] for item in data], int(reply["usage"]["prompt_tokens"]))

    async def detokenize(self, tokens: list[int]) -> str:
        self._check_token_ids(tokens, "prompt")
        reply = await self._post("/detokenize", {"tokens": tokens})
        return str(reply["content"])

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        # The child's /tokenize: the ids its /completion makes of a text prompt (add_special, parse_special).
        response = await self._post_raw("/tokenize", tokenize_body(text, add_special, with_pieces), "content")
        return tokenized(response.content, with_pieces)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self._check_token_ids(list(request.sampling.logit_bias), "logit_bias")
        body = {
            **sampling_body(request.sampling),
            "stop": request.stop,
            "stream": True,
            "return_progress": True,
        }
        body.update(cache_prompt=self.settings.cache_prompt, n_predict=request.max_tokens or -1)
        special_text = request.messages is not None and has_special_text(request.messages, self._specials)
        if request.messages is not None and (request.tools or request.assistant_prefix or special_text):
            # The child's template renders the tools, but calls are ours to constrain and parse (its chat
            # endpoint would parse them its own way): the rendered prompt goes to /completion. So do
            # messages holding special-token text, which its chat endpoint would make control tokens.
            path, parse, param = "/completion", completion_event, "messages"
            prompt = await self._chat_prompt(request)
            images = request_images(request)
            if images and not isinstance(prompt, str):
                raise InvalidRequestError(
                    "special-token text beside images is not supported on llama.cpp", param="messages"
                )
            # Images go with the prompt, each where the template wrote the child's media marker.
            body["prompt"] = (
                {"prompt_string": prompt, "multimodal_data": [_base64(i) for i in images]}
                if images
                else prompt
            )
        elif request.messages is not None:
            # One request: the child templates the messages itself (its /apply-template costs a round trip).
            path, parse, param = "/v1/chat/completions", chat_event, "messages"
            body["messages"] = template_messages(
                request.messages, object_arguments=False, image_part=_image_url_part
            )
            if request.template_kwargs:
                body["chat_template_kwargs"] = request.template_kwargs
            # Raw text, as MLX gives it (the generation layer splits reasoning, the same on both engines),
            # and the counts in a final usage event.
            body.update(reasoning_format="none", stream_options={"include_usage": True})
        else:
            path, parse, param = "/completion", completion_event, "prompt"
            if isinstance(request.prompt, list):
                self._check_token_ids(request.prompt, "prompt")
            body["prompt"] = request.prompt or ""
        chat = path == "/v1/chat/completions"
        body.update(
            constraint_body(
                request.json_schema,
                request.logprobs,
                chat,
                self._llguidance,
                request.grammar or request.output_grammar,
            )
        )
        try:
            async with self._post_stream(path, msgspec.json.encode(body)) as response:
                if response.status != 200:
                    raise child_error(response.status, await response.read(), param)
                async for chunk in self._chunks(response, parse, request, param):
                    yield chunk
                    if chunk.finish_reason is not None:
                        return
        except ChildConnectionError as exc:
            raise self._unavailable(exc) from exc
        raise self._unavailable(None)

    async def _chunks(
        self, response: Any, parse: Any, request: GenerationRequest, param: str
    ) -> AsyncIterator[GenerationChunk]:
        """The child's events as chunks: stops held back, logprobs in step, the context's room kept."""
        stops = StopBuffer(request.stop)
        scored = LogprobQueue() if request.logprobs is not None else None
        finish: str | None = None
        prompt = cached = counted = emitted = 0
        limit: int | None = None  # tokens the context has room for (known from the first event)
        async for line in response.lines():
            if line.startswith(b"error:"):
                raise child_error(500, line[6:], param)
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            event = parse(line[6:])
            if limit is None and event.prompt_total is not None:
                # The first event names the prompt's length before any of it is evaluated.
                prompt = event.prompt_total
                limit = completion_room(self.info.context_length, prompt, request.max_tokens, param)
            cached = event.cached or cached
            counted += event.token
            text = stops.feed(event.text)
            finish = event.finish or finish
            if scored is not None:
                for entry in event.logprobs or []:
                    entry.top = entry.top[: request.logprobs]
                    scored.add(entry)
            full = limit is not None and counted >= limit and event.usage is None and finish is None
            if event.usage is not None or full:
                # The last event; or the context is full where the child would go on (its n_ctx is padded).
                finish = "stop" if stops.stopped else ("length" if full else finish or "stop")
                text += stops.flush()
                usage = event.usage or (prompt, counted)
                chunk = GenerationChunk(
                    text, finish, usage[0], usage[1], cached_tokens=event.cached or cached
                )
                chunk.tokens = max(usage[1] - emitted, 0)
                chunk.logprobs = scored.finish(text, stops.stopped) if scored is not None else None
                yield chunk
                return
            if text:
                chunk = GenerationChunk(text, logprobs=scored.take(text) if scored else None)
                chunk.tokens, emitted = counted - emitted, counted
                if emitted == chunk.tokens:  # the first chunk tells the prompt's size
                    chunk.prompt_tokens, chunk.cached_tokens = prompt, cached
                yield chunk

    async def _chat_prompt(self, request: GenerationRequest) -> str | list[str | int]:
        """The prompt the child's chat template makes of messages and tools, as /completion takes it:
        text, or text and token ids where messages hold special-token text (ids of it as text)."""
        messages, literals = escape_specials(request.messages or [], self._specials)
        body: dict[str, Any] = {
            "messages": template_messages(messages, object_arguments=False, image_part=_image_url_part)
        }
        body["tools"] = template_tools(request.tools or [])
        if request.template_kwargs:
            body["chat_template_kwargs"] = request.template_kwargs
        rendered = str((await self._post("/apply-template", body, "messages"))["prompt"])
        pieces = split_rendered(rendered + request.assistant_prefix, literals)
        if len(pieces) == 1:
            return pieces[0][0]
        prompt: list[str | int] = []
        for text, as_text in pieces:
            if as_text:
                tokenized = {"content": text, "add_special": False, "parse_special": False}
                prompt += (await self._post("/tokenize", tokenized, "messages"))["tokens"]
            else:
                prompt.append(text)  # the template's own text: its markers are control tokens
        return prompt

    def _check_token_ids(self, tokens: list[int], param: str) -> None:
        check_token_ids(tokens, self._vocab, param)

    async def _post(self, path: str, body: dict[str, Any], param: str = "prompt") -> dict[str, Any]:
        reply: dict[str, Any] = (await self._post_raw(path, body, param)).json()
        return reply

    async def _post_raw(self, path: str, body: dict[str, Any], param: str) -> httpx.Response:
        try:
            response = await self._require_client().post(path, json=body)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.status_code != 200:
            raise child_error(response.status_code, response.content, param)
        return response


def _image_url_part(image: ImageInput) -> dict[str, Any]:
    """An image for the child's chat template: always a data: URL (the child would fetch any other URL)."""
    return {"type": "image_url", "image_url": {"url": image.data_url()}}


def _base64(image: ImageInput) -> str:
    return base64.b64encode(image.data).decode()
