"""One rank of a distributed MLX model: `mlx.launch ... python -m radis_mlx.engines.distributed.rank`.

Every rank loads its shard with mlx-lm (`sharded_load` for tensor parallelism, the pipeline split for
pipeline parallelism) and joins the mx.distributed group. Rank 0 alone serves a small loopback HTTP API
to the radis-mlx server (see engine.py) and does all the request logic; the other ranks follow.
The group's secret arrives as the first line on stdin (never argv): rank 0's API wants it on every
request but /health, and followers prove it to rank 0's doorbell.

Every rank must issue the same collectives in the same order, so rank 0 broadcasts (as all_sum over
zeros from the followers) a header per request, then the prompt tokens; during generation it samples
and broadcasts each token from inside the sampler, and after each token an all_sum of one flag says
whether to go on. Followers therefore need no tokenizer, sampler or stop logic, and never diverge.
"""

from __future__ import annotations

import argparse
import functools
import hmac
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec

from radis_mlx.engines.child.watchdog import die_with_parent, watch_parent
from radis_mlx.engines.distributed.doorbell import Bell, Doorbell, leader_address, read_secret
from radis_mlx.engines.distributed.wire import GENERATE, HEADER, Job, control, share
from radis_mlx.engines.mlx.prompt import GuidanceTokenizer
from radis_mlx.generation.types import GenerationRequest

log = logging.getLogger("radis_mlx.distributed.rank")


def pipelined_classes(config: dict[str, Any]) -> tuple[type, type]:
    """mlx-lm's model classes, with Llama given the pipeline split mlx-lm has for Qwen2 and others."""
    from mlx_lm.models import llama
    from mlx_lm.utils import _get_classes  # what load_model uses by default

    model_class, args_class = _get_classes(config)
    if model_class is not llama.Model:  # mistral and others map to it too
        return model_class, args_class
    from radis_mlx.engines.distributed.pipeline import PipelineLlama

    return PipelineLlama, args_class


def load_shard(folder: Path, strategy: str, group: Any) -> tuple[Any, Any]:
    """This rank's part of the model, and the tokenizer."""
    import mlx.core as mx
    from mlx_lm.utils import load_model, load_tokenizer, sharded_load

    if strategy == "tensor":
        model, tokenizer = sharded_load(str(folder), tensor_group=group)
        return model, tokenizer
    # sharded_load's pipeline path wants a safetensors index and mlx-lm's own classes; for local folders
    # the rest of it is this.
    model, config = load_model(folder, lazy=True, strict=False, get_model_classes=pipelined_classes)
    if not hasattr(model, "model") or not hasattr(model.model, "pipeline"):
        raise ValueError(f"mlx-lm has no pipeline split for the {config.get('model_type')} architecture")
    model.model.pipeline(group)
    tokenizer = load_tokenizer(folder, eos_token_ids=config.get("eos_token_id"))
    mx.eval(model.parameters())
    mx.eval(mx.distributed.all_sum(mx.array(1.0), stream=mx.cpu))
    return model, tokenizer


@dataclass
class Rank:
    """This process's place in the group and its shard."""

    group: Any
    model: Any
    tokenizer: Any
    context_length: int
    info: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def pieces(self) -> GuidanceTokenizer:
        """Each token's bytes (/tokenize's pieces), from llguidance's view of the tokenizer."""
        return GuidanceTokenizer(self.tokenizer)

    @property
    def leader(self) -> bool:
        return bool(self.group.rank() == 0)

    def follow(self, bell: Bell | None) -> None:
        """Followers: run the same steps as rank 0 for every request it broadcasts, forever."""
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        while True:
            if bell is not None and not bell.wait():
                return  # rank 0 is gone
            header = share(mx.zeros(HEADER, mx.int32), leader=False).tolist()
            op, length, max_tokens = header[0], header[1], header[2]
            if op != GENERATE:
                return
            prompt = share(mx.zeros(length, mx.int32), leader=False)
            mx.eval(prompt)

            def follow_token(logprobs: Any) -> Any:
                # Tied to the logits, so this all_sum runs after the model's own collectives, as on rank 0.
                return share(mx.depends(mx.zeros(logprobs.shape[:-1], mx.int32), logprobs), leader=False)

            for _ in generate_step(prompt, self.model, max_tokens=max_tokens, sampler=follow_token):
                if control(False, leader=False):
                    break

    def lead(self, jobs: queue.SimpleQueue[Job | None], doorbell: Doorbell | None) -> None:
        """Rank 0: run each job's generation in step with the followers."""
        from radis_mlx.engines.distributed.leader import Leader

        leader = Leader(self.model, self.tokenizer, self.context_length, doorbell)
        while (job := jobs.get()) is not None:
            leader.run(job)


def measure(rank: Rank) -> None:
    """Per-rank weight and memory bytes, gathered on every rank (for /v1/models)."""
    import mlx.core as mx
    import mlx.utils

    parameters: list[tuple[str, Any]] = mlx.utils.tree_flatten(rank.model.parameters())  # type: ignore[assignment]
    weights = sum(v.nbytes for _, v in parameters)
    mine = mx.array([[weights, mx.get_active_memory(), os.getpid()]], dtype=mx.int64)
    gathered: list[list[int]] = mx.distributed.all_gather(mine, stream=mx.cpu).tolist()  # type: ignore[assignment]
    rank.info.update(
        ranks=rank.group.size(),
        context_length=rank.context_length,
        vocab=len(rank.tokenizer.vocab),
        rank_weight_bytes=[int(row[0]) for row in gathered],
        rank_memory_bytes=[int(row[1]) for row in gathered],
        rank_pids=[int(row[2]) for row in gathered],
    )


class ControlHandler(BaseHTTPRequestHandler):
    """Rank 0's loopback API: /health, /info, /detokenize, and /generate as lines of JSON."""

    protocol_version = "HTTP/1.0"  # one request per connection; the stream ends when we close it
    rank: Rank
    jobs: queue.SimpleQueue[Job | None]
    secret: str

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _authorized(self) -> bool:
        """The server's secret in `Authorization: Bearer` (else a 401 is sent)."""
        offered = (self.headers.get("Authorization") or "").removeprefix("Bearer ").encode()
        if self.secret and hmac.compare_digest(offered, self.secret.encode()):
            return True
        self._reply({"error": "unauthorized"}, 401)
        return False

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply({"status": "ok"})
        elif not self._authorized():
            return
        elif self.path == "/info":
            self._reply(self.rank.info)
        else:
            self._reply({"error": "not found"}, 404)

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/detokenize":
            tokens = msgspec.json.decode(body, type=list[int])
            self._reply({"content": self.rank.tokenizer.decode(tokens)})
            return
        if self.path == "/tokenize":
            text, add_special, with_pieces = msgspec.json.decode(body, type=tuple[str, bool, bool])
            ids = list(self.rank.tokenizer.encode(text, add_special_tokens=add_special))
            pieces = [list(self.rank.pieces.get().decode_bytes([t])) for t in ids] if with_pieces else None
            self._reply({"ids": ids, "pieces": pieces})
            return
        if self.path != "/generate":
            self._reply({"error": "not found"}, 404)
            return
        request, template, parse_special = msgspec.json.decode(
            body, type=tuple[GenerationRequest, str | None, bool]
        )
        job = Job(request, template, parse_special)
        self.jobs.put(job)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        try:
            while (item := job.out.get()) is not None:
                self.wfile.write(msgspec.json.encode(item) + b"\n")
                self.wfile.flush()
        except OSError:  # the server went away: stop generating for it
            job.cancelled.set()
            while job.out.get() is not None:
                pass
        finally:
            job.sent.set()

    def _reply(self, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_control(rank: Rank, port: int, jobs: queue.SimpleQueue[Job | None], secret: str) -> None:
    """Rank 0's HTTP API on 127.0.0.1:port, in background threads; requests must carry `secret`."""
    handler = type("Handler", (ControlHandler,), {"rank": rank, "jobs": jobs, "secret": secret})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="control-http", daemon=True).start()


def watch_server(pid: int, interval: float = 0.5) -> None:
    """Rank 0 (on the server's machine) exits when the server is gone; mlx.launch then stops the rest."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, under another user
                pass

    threading.Thread(target=watch, name="server-watchdog", daemon=True).start()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's command line (the same on every rank)."""
    parser = argparse.ArgumentParser(prog="python -m radis_mlx.engines.distributed.rank")
    parser.add_argument("--model", required=True, help="an MLX model folder, at the same path on every host")
    parser.add_argument("--strategy", choices=["tensor", "pipeline"], required=True)
    parser.add_argument("--backend", default="ring")
    parser.add_argument("--port", type=int, required=True, help="rank 0's loopback HTTP port")
    parser.add_argument("--context-length", type=int, default=0)
    parser.add_argument("--server-pid", type=int, default=0, help="rank 0 exits when this process is gone")
    parser.add_argument("--doorbell-port", type=int, default=0, help="rank 0's port that wakes followers")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Join the group, load this rank's shard, then lead (rank 0) or follow."""
    import mlx.core as mx

    from radis_mlx.engines.mlx.prompt import keep_leading_space, trained_context

    args = parse_args(argv)
    secret = read_secret(timeout=60)  # the first line radis-mlx wrote to mlx.launch
    # Close the stdin pipe from mlx.launch (engine.py says why): /dev/null in its place.
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    rank_name = os.environ.get("MLX_RANK", "?")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank_name}: %(message)s")
    # Our parent is mlx.launch (or the ssh session running us); when it goes, so do we.
    die_with_parent(os.getppid())
    watch_parent(os.getppid())
    if os.environ.get("MLX_RANK") == "0" and args.server_pid:
        watch_server(args.server_pid)
    group = mx.distributed.init(backend=args.backend, strict=True)
    # Without the ring's hostfile (one rank, other backends) followers wait inside the collective.
    host = leader_address() if args.doorbell_port and group.size() > 1 else None
    doorbell = None
    if host and group.rank() == 0:
        doorbell = Doorbell(host, args.doorbell_port, group.size() - 1, secret)
    folder = Path(args.model)
    model, tokenizer = load_shard(folder, args.strategy, group)
    keep_leading_space(tokenizer)
    trained = trained_context(folder)
    context = min(args.context_length, trained) if args.context_length else trained
    rank = Rank(group, model, tokenizer, context)
    measure(rank)
    log.info("rank %d of %d loaded (%s)", group.rank(), group.size(), args.strategy)
    if not rank.leader:
        rank.follow(Bell(host, args.doorbell_port, group.rank(), timeout=60, secret=secret) if host else None)
        return
    if doorbell is not None:
        doorbell.wait_for_followers(timeout=60)
    jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
    serve_control(rank, args.port, jobs, secret)
    rank.lead(jobs, doorbell)


if __name__ == "__main__":
    main()
