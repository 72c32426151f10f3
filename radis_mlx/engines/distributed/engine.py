"""A model sharded across mx.distributed ranks: one mlx.launch group, supervised like a llama.cpp child.

`start()` launches every rank (`python -m radis_mlx.engines.distributed.rank`) through mlx.launch in
a process group of its own; rank 0 serves a loopback HTTP API (health, info, detokenize, and
/generate as lines of JSON) that this engine proxies. A rank that dies ends the launcher, which the
supervisor reports: in-flight requests get a 503, the pool marks the model unloaded, and the next
request launches a fresh group. Why a supervised group rather than rank 0 inside this server:
docs/DISTRIBUTED.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from radis_mlx.config import DistributedSettings
from radis_mlx.engines.base import EngineInfo
from radis_mlx.engines.child.engine import ChildEngine
from radis_mlx.engines.child.stream import ChildConnectionError
from radis_mlx.engines.child.supervisor import free_port
from radis_mlx.errors import (
    InvalidRequestError,
    ModelLoadError,
    RadisError,
    UnsupportedModelError,
)
from radis_mlx.generation.types import GenerationChunk, GenerationRequest, Tokenized
from radis_mlx.store.gguf import is_gguf

log = logging.getLogger(__name__)


def find_launcher() -> str:
    """mlx.launch from the same environment as this Python (else from PATH)."""
    beside = Path(sys.executable).with_name("mlx.launch")
    found = str(beside) if beside.is_file() else shutil.which("mlx.launch")
    if found is None:
        raise ModelLoadError("mlx.launch was not found (it comes with the mlx package)")
    return found


def ring_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free now (the ring listens on them)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise ModelLoadError(f"no {count} consecutive free ports for the ring backend")


def check_strategy(folder: Path, strategy: str, ranks: int) -> None:
    """Refuse (400) a split the architecture cannot do, before any rank starts."""
    from mlx_lm.models.pipeline import PipelineMixin
    from mlx_lm.utils import _get_classes  # how mlx-lm picks the classes for a config

    config = json.loads((folder / "config.json").read_text())
    kind = config.get("model_type", "?")
    try:
        model_class = _get_classes(config)[0]
    except ValueError as exc:
        raise UnsupportedModelError(str(exc), param="model") from exc
    if strategy == "tensor":
        if not hasattr(model_class, "shard"):
            raise UnsupportedModelError(f"mlx-lm has no tensor parallelism for {kind} models", param="model")
        for field in ("num_attention_heads", "num_key_value_heads"):
            heads = config.get(field)
            if isinstance(heads, int) and heads % ranks:
                raise UnsupportedModelError(
                    f"tensor parallelism splits attention heads evenly: {field} = {heads} does not "
                    f'divide by {ranks} ranks (use strategy = "pipeline", or a rank count that divides it)',
                    param="model",
                )
        return
    module = sys.modules[model_class.__module__]
    pipelined = model_class.__module__ == "mlx_lm.models.llama" or any(
        isinstance(v, type) and issubclass(v, PipelineMixin) for v in vars(module).values()
    )
    if not pipelined:
        raise UnsupportedModelError(f"mlx-lm has no pipeline parallelism for {kind} models", param="model")
    layers = config.get("num_hidden_layers", 0)
    if layers < ranks:
        raise UnsupportedModelError(f"{layers} layers cannot be split across {ranks} ranks", param="model")


class MlxDistributedEngine(ChildEngine):
    """An MLX model split across the ranks of one mlx.launch group."""

    child_noun = "the distributed group"

    def __init__(
        self,
        model_id: str,
        path: Path,
        *,
        context_length: int | None,
        settings: DistributedSettings,
        base_dir: Path,
        cache_dir: Path,
    ) -> None:
        self.model_id = model_id
        self.path = path
        self.settings = settings
        self.hostfile = (base_dir / settings.hosts).resolve() if settings.hosts else None
        self.cache_dir = cache_dir
        self.info = EngineInfo(name="mlx-distributed", context_length=context_length or 0)
        super().__init__(f"mlx.launch[{model_id}]", process_group=True, stdin_pipe=True)
        self.hosts: list[str] = []
        self._folder = path
        self._vocab = 0

    def launch_argv(self, port: int) -> list[str]:
        """mlx.launch running our rank entry point on every rank; rank 0 listens on `port`."""
        s = self.settings
        local = ["--hosts", "127.0.0.1", "-n", str(s.ranks)]
        argv = [find_launcher(), *(["--hostfile", str(self.hostfile)] if self.hostfile else local)]
        argv += ["--backend", s.backend, "--starting-port", str(ring_ports(len(self.hosts)))]
        argv += ["--", sys.executable, "-m", "radis_mlx.engines.distributed.rank"]
        argv += ["--model", str(self._folder), "--strategy", s.strategy, "--backend", s.backend]
        argv += ["--port", str(port)]
        argv += ["--context-length", str(self.info.context_length), "--server-pid", str(os.getpid())]
        argv += ["--doorbell-port", str(free_port())]  # on rank 0, which runs on this machine
        return argv

    async def start(self) -> None:
        self.hosts = self._read_hosts()
        self._folder = await asyncio.to_thread(self._mlx_folder)
        await asyncio.to_thread(check_strategy, self._folder, self.settings.strategy, len(self.hosts))
        await self.child.start(self.launch_argv, timeout=self.settings.start_timeout)
        self._client = self._new_client(timeout=httpx.Timeout(30.0, read=None))
        try:
            info = (await self._client.get("/info")).json()
        except (httpx.HTTPError, ValueError) as exc:
            await self.close()
            raise ModelLoadError(f"rank 0 of {self.model_id} did not describe the group: {exc}") from exc
        self._vocab = int(info["vocab"])
        # mlx.launch forwards its stdin to every rank and polls each rank's stdin pipe, which is always
        # writable: a core busy while the model idles. The ranks have closed theirs by now, so one byte
        # makes each forwarding write fail and mlx.launch stops polling that pipe (and with a pipe for
        # its own stdin, not /dev/null, its main loop waits instead of reading EOF forever).
        self.child.write_stdin(b"\n")
        self.info.context_length = int(info["context_length"])
        self.info.size_bytes = sum(info["rank_weight_bytes"])
        self.info.details = {
            "format": "gguf" if is_gguf(self.path) else "mlx",
            "strategy": self.settings.strategy,
            "backend": self.settings.backend,
            "hosts": ",".join(self.hosts),
            "rank_weight_bytes": ",".join(map(str, info["rank_weight_bytes"])),
            "rank_memory_bytes": ",".join(map(str, info["rank_memory_bytes"])),
            "rank_pids": ",".join(map(str, info["rank_pids"])),
            "pid": str(self.child.pid),
        }

    async def detokenize(self, tokens: list[int]) -> str:
        bad = next((t for t in tokens if not 0 <= t < self._vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"token id {bad} is outside the vocabulary (0..{self._vocab - 1})", param="prompt"
            )
        try:
            response = await self._require_client().post("/detokenize", content=msgspec.json.encode(tokens))
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        return str(response.json()["content"])

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        body = msgspec.json.encode((text, add_special, with_pieces))
        try:
            reply = (await self._require_client().post("/tokenize", content=body)).json()
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        return Tokenized(reply["ids"], [bytes(p) for p in reply["pieces"]] if with_pieces else None)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        body = msgspec.json.encode((request, self.chat_template, self.parse_special))
        try:
            async with self._post_stream("/generate", body) as response:
                async for line in response.lines():
                    if line.startswith(b'{"error"'):
                        raise _rank_error(json.loads(line)["error"])
                    chunk = msgspec.json.decode(line, type=GenerationChunk)
                    yield chunk
                    if chunk.finish_reason is not None:
                        return
        except ChildConnectionError as exc:
            raise self._unavailable(exc) from exc
        raise self._unavailable(None)  # the stream ended without a finish: rank 0 went away

    def _read_hosts(self) -> list[str]:
        if self.hostfile is None:
            return ["127.0.0.1"] * (self.settings.ranks or 0)
        from mlx._distributed_utils.common import Hostfile  # mlx.launch's own parser

        try:
            return [host.ssh_hostname for host in Hostfile.from_file(self.hostfile).hosts]
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc

    def _mlx_folder(self) -> Path:
        if not is_gguf(self.path):
            return self.path
        from radis_mlx.engines.mlx.gguf_to_mlx import convert_gguf

        return convert_gguf(self.path, self.cache_dir)


def _rank_error(fields: dict[str, Any]) -> RadisError:
    """The RadisError rank 0 reported, with its status, type, param and code."""
    error = RadisError(str(fields["message"]), param=fields.get("param"), code=fields.get("code"))
    error.status_code = int(fields["status"])
    error.type = str(fields["type"])
    return error
