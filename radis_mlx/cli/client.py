"""The terminal's side of a running server: management calls, helpful errors, the streaming chat.

httpx only (the `openai` SDK is a test dependency); server-sent events are parsed here.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import click
import httpx


class ClientError(click.ClickException):
    """A failed call to the server, phrased for the terminal."""


class ServerDown(ClientError):
    """Nothing answers at the server's address."""


def close_matches(name: str, candidates: Iterable[str]) -> list[str]:
    """Model ids that look like a mistyped one."""
    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)


def unknown_model(name: str, candidates: Iterable[str]) -> str:
    """'unknown model x; did you mean y?' — or where to look when nothing is close."""
    matches = close_matches(name, candidates)
    hint = f"did you mean {' or '.join(repr(m) for m in matches)}?" if matches else "see `radis-mlx ls`"
    return f"unknown model '{name}'; {hint}"


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """JSON payloads of `data:` lines, up to `data: [DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


class ServerClient:
    """One running radis-mlx server, at a base URL (no /v1)."""

    def __init__(self, base: str, api_key: str | None = None, timeout: float = 30) -> None:
        self.base = base.rstrip("/")
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        # A server on this machine is never reached through a proxy from the environment (HTTP_PROXY),
        # which would see the key and the prompts; a remote one may need it.
        host = httpx.URL(self.base).host
        self.trust_env = not (host == "localhost" or _is_loopback_ip(host))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; a server that is not there is a clear message, not a traceback."""
        try:
            return httpx.request(
                method,
                self.base + path,
                headers=self.headers,
                timeout=self.timeout,
                trust_env=self.trust_env,
                **kwargs,
            )
        except httpx.TransportError as exc:
            raise self.not_running(exc) from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON call; an error body becomes its message (an unknown model gets close matches)."""
        return self.checked(self.request(method, path, **kwargs))

    def checked(self, reply: httpx.Response) -> Any:
        if reply.status_code < 400:
            return reply.json()
        try:
            error = json.loads(reply.read()).get("error", {})
        except ValueError:
            error = {}
        message = error.get("message") or f"{reply.status_code} {reply.reason_phrase}"
        if error.get("code") == "model_not_found":
            name = message.split("'")[1] if message.count("'") >= 2 else ""
            if name:
                message = unknown_model(name, self.model_ids())
        raise ClientError(message)

    def model_ids(self) -> list[str]:
        try:
            return [m["id"] for m in self.request("GET", "/v1/models").json()["data"]]
        except (ClientError, ValueError, KeyError):
            return []

    def not_running(self, exc: Exception) -> ServerDown:
        return ServerDown(
            f"no radis-mlx server at {self.base} ({type(exc).__name__}); "
            "start one with `radis-mlx serve`, or pass --url"
        )

    def stream_chat(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The events of a streaming chat completion; an error event raises ClientError."""
        try:
            with httpx.stream(
                "POST",
                f"{self.base}/v1/chat/completions",
                json={**body, "stream": True},
                headers=self.headers,
                timeout=httpx.Timeout(self.timeout, read=None),
                trust_env=self.trust_env,
            ) as reply:
                if reply.status_code >= 400:
                    self.checked(reply)
                for event in sse_events(reply.iter_lines()):
                    if "error" in event:
                        raise ClientError(event["error"].get("message", "the generation failed"))
                    yield event
        except httpx.TransportError as exc:
            raise self.not_running(exc) from None


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


EXIT_COMMANDS = ("/exit", "/quit", "/bye")
HELP = "Type a message; /clear forgets the conversation, /exit (or Ctrl-D) leaves."


def chat_loop(
    client: ServerClient,
    model: str,
    *,
    system: str | None,
    params: dict[str, Any],
    read: Callable[[], str],
    write: Callable[[str], None],
    report: Callable[[str], None],
    verbose: bool = False,
) -> None:
    """Read a line, stream the reply, keep the history; until /exit or end of input."""
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    while True:
        try:
            text = read().strip()
        except EOFError:
            write("\n")
            return
        if not text:
            continue
        if text in EXIT_COMMANDS:
            return
        if text == "/clear":
            history = list(start)
            continue
        if text.startswith("/"):
            report(HELP)
            continue
        history.append({"role": "user", "content": text})
        try:
            reply = _stream_reply(client, model, history, params, write, report if verbose else None)
        except ClientError as exc:
            history.pop()  # the unanswered turn does not stay in the history
            write("\n")
            report(f"error: {exc.message}")
            continue
        except KeyboardInterrupt:
            history.pop()
            write("\n")
            continue
        history.append({"role": "assistant", "content": reply})


def _stream_reply(
    client: ServerClient,
    model: str,
    history: list[dict[str, str]],
    params: dict[str, Any],
    write: Callable[[str], None],
    stats: Callable[[str], None] | None,
) -> str:
    body = {"model": model, "messages": history, "stream_options": {"include_usage": True}, **params}
    # The speed counts from the first token: a model loading on first use is not decoding.
    first, pieces, usage = 0.0, [], None
    for event in client.stream_chat(body):
        usage = event.get("usage") or usage
        for choice in event.get("choices", []):
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                first = first or time.monotonic()
                pieces.append(piece)
                write(piece)
    write("\n")
    if usage and stats:
        seconds = max(time.monotonic() - (first or time.monotonic()), 1e-6)
        tokens = usage["completion_tokens"]
        stats(f"[{tokens} tokens, {tokens / seconds:.1f} tok/s, prompt {usage['prompt_tokens']} tokens]")
    return "".join(pieces)
