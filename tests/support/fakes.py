"""A fake engine for unit tests of pool and API logic (never instead of the end-to-end tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Litestar

from radis_mlx.app import create_app
from radis_mlx.config import Config, ModelEntry, ServerSettings
from radis_mlx.engines.base import Engine, EngineInfo
from radis_mlx.errors import ContextLengthExceeded, NotFoundError
from radis_mlx.generation.stops import StopBuffer
from radis_mlx.generation.types import (
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    RerankResult,
    Tokenized,
)
from radis_mlx.pool import ModelPool


class FakeEngine(Engine):
    """Echoes words of a script one per 'token', honoring max_tokens and stops."""

    def __init__(
        self,
        script: str = "one two three four five six seven eight",
        context_length: int = 64,
        delay: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self.script = script.split() if isinstance(script, str) else list(script)
        self.delay = delay
        self.fail_after = fail_after
        self.info = EngineInfo(name="fake", context_length=context_length)
        self.started = self.closed = 0
        self.active_generations = 0

    async def start(self) -> None:
        await asyncio.sleep(self.delay)
        self.started += 1

    async def close(self) -> None:
        self.closed += 1

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        prompt = request.prompt if request.prompt is not None else [m.content for m in request.messages or []]
        prompt_tokens = len(str(prompt).split())
        room = self.info.context_length - prompt_tokens
        if room <= 0:
            raise ContextLengthExceeded.of(self.info.context_length, prompt_tokens, 1, "messages")
        budget = min(request.max_tokens or room, room)
        stops = StopBuffer(request.stop)
        self.active_generations += 1
        try:
            for count, word in enumerate(self.script, start=1):
                if self.fail_after is not None and count > self.fail_after:
                    raise RuntimeError("fake engine failure")
                await asyncio.sleep(self.delay)
                text = stops.feed(f" {word}" if count > 1 else word)
                if stops.stopped or count == budget or count == len(self.script):
                    reason = "stop" if stops.stopped or count < budget else "length"
                    yield GenerationChunk(text + stops.flush(), reason, prompt_tokens, count, tokens=1)
                    return
                yield GenerationChunk(text, tokens=1, prompt_tokens=prompt_tokens if count == 1 else 0)
        finally:
            self.active_generations -= 1

    async def detokenize(self, tokens: list[int]) -> str:
        return " ".join(str(t) for t in tokens)

    async def tokenize(self, text: str, *, add_special: bool, with_pieces: bool = False) -> Tokenized:
        """One 'token' per word: its length is its id; special tokens are a 0 before and after."""
        words = text.split()
        ids = ([0] if add_special else []) + [len(w) for w in words] + ([0] if add_special else [])
        pieces = ([b""] if add_special else []) + [w.encode() for w in words] + ([b""] if add_special else [])
        return Tokenized(ids, pieces if with_pieces else None)

    async def rerank(self, query: str, documents: list[str]) -> RerankResult:
        """Score: how many of the query's words the document has; one 'token' per word of both."""
        wanted = set(query.split())
        scores = [float(len(wanted & set(d.split()))) for d in documents]
        return RerankResult(scores, sum(len(query.split()) + len(d.split()) for d in documents))

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        """Vector i is 3-4-0-0… scaled by input i's word count; one 'token' per word or id."""
        sizes = [len(x.split()) if isinstance(x, str) else len(x) for x in inputs]
        return EmbeddingResult([[3.0 * n, 4.0 * n, 0.0, 0.0] for n in sizes], sum(sizes))


def fake_app() -> Litestar:
    """The real app over a pool of fake engines that never downloads (fuzzing, route tests)."""
    server = ServerSettings(allowed_hosts=["localhost", "testserver", "testserver.local"])
    models = {
        "fake": ModelEntry(source="/nowhere"),
        "fake-rerank": ModelEntry(source="/nowhere", kind="rerank"),
    }
    config = Config(server=server, models=models)

    async def factory(model_id, entry):
        return FakeEngine(context_length=4096)

    def no_download(source, progress=None):
        # What a hub answers for a repository it does not have: a pull that finds nothing, not a
        # server error (Ollama's non-streaming /api/pull answers with the failure's status).
        raise NotFoundError(f"the fuzz app downloads nothing ({source})")

    pool = ModelPool(config, factory=factory)
    pool.store.materialize = no_download  # pulls of generated ids must never reach the network
    return create_app(config, pool)
