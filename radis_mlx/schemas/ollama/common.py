"""What Ollama's requests share (options, keep_alive, format, think) and the times its replies carry.

Ollama's rules, from its api/types.go: unknown option keys are ignored; integer options take any JSON
number (truncated); keep_alive is seconds as a number or a Go duration string, negative is forever and
0 unloads; `format` is "json" or a JSON schema. A wrong type is a 400 here (Ollama answers 500).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from msgspec import Meta, Struct

from radis_mlx.config import SamplingDefaults
from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.grammar import ANY_OBJECT, schema_grammar
from radis_mlx.generation.types import ReasoningOptions, SamplingParams

# Ollama's integer options accept any JSON number and truncate it.
Number = int | float
StopList = Annotated[list[str], Meta(max_length=16)]
ThinkLevel = bool | str
KeepAlive = int | float | str
FORMAT_ERROR = 'invalid format: {!r}; expected "json" or a valid JSON Schema object'

# Ollama's defaults (api.DefaultOptions) where neither the request nor the model's entry sets a field.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.9
THINK_LEVELS = ("low", "medium", "high", "max")
MAX_TOP_K = 2**31 - 1
# Idle seconds past which a model's unloading is as good as never (a date Python can still write).
FOREVER = 100 * 365 * 86400
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class Options(Struct, kw_only=True):
    """Ollama's `options`. Used: the sampling fields, num_predict, seed and stop. Accepted and ignored:
    num_keep, typical_p, repeat_last_n and the load-time ones (num_ctx: a model always runs at the
    context_length its entry gives it, whatever the request asks)."""

    num_keep: Number | None = None
    seed: Number | None = None
    num_predict: Number | None = None
    top_k: Number | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    typical_p: float | None = None
    repeat_last_n: Number | None = None
    temperature: Annotated[float, Meta(ge=0)] | None = None
    repeat_penalty: Annotated[float, Meta(gt=0)] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: StopList | None = None
    num_ctx: Number | None = None
    num_batch: Number | None = None
    num_gpu: Number | None = None
    main_gpu: Number | None = None
    use_mmap: bool | None = None
    num_thread: Number | None = None

    def sampling(self, defaults: SamplingDefaults) -> SamplingParams:
        """Options over the model's defaults over Ollama's."""
        seed = None if self.seed is None or self.seed < 0 else int(self.seed)  # -1: random, as Ollama
        if seed is not None and seed >= 2**64:
            raise InvalidRequestError("seed must be below 2**64", param="options.seed")
        top_k = self.top_k if self.top_k is not None else _pick(defaults.top_k, DEFAULT_TOP_K)
        return SamplingParams(
            temperature=_pick(self.temperature, defaults.temperature, DEFAULT_TEMPERATURE),
            top_p=_pick(self.top_p, defaults.top_p, DEFAULT_TOP_P),
            top_k=min(max(0, int(top_k)), MAX_TOP_K),  # 0 or less: off; past the vocabulary: every token
            min_p=_pick(self.min_p, defaults.min_p, 0.0),
            seed=seed,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            repetition_penalty=_pick(self.repeat_penalty, defaults.repetition_penalty, 1.0),
        )

    def max_tokens(self, defaults: SamplingDefaults) -> int | None:
        """num_predict: -1 (unlimited), -2 (fill the context) and 0 mean up to the context's end."""
        if self.num_predict is None:
            return defaults.max_tokens
        return int(self.num_predict) if self.num_predict >= 1 else None


def _pick(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def keep_alive_seconds(value: KeepAlive | None) -> float | None:
    """keep_alive as idle seconds: None (unset), 0 (unload now), math.inf (never unload when idle)."""
    if value is None:
        return None
    if isinstance(value, str):
        seconds = _go_duration(value)
    elif not math.isfinite(value):
        raise InvalidRequestError("keep_alive must be a finite number of seconds", param="keep_alive")
    else:
        seconds = float(value)
    return math.inf if seconds < 0 else seconds


def pool_ttl(seconds: float | None) -> float | None:
    """The pool's idle TTL for a keep_alive; None leaves the model's own (unset, or 0: the request
    unloads the model once it is done, and the next request's keep_alive decides again)."""
    return seconds or None


def _go_duration(text: str) -> float:
    """Go's time.ParseDuration: "5m", "1h30m", "-1m", "300ms"; "0" alone may go without a unit."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _GO_DURATION.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise InvalidRequestError(
            f'time: invalid duration "{text}" (a number of seconds, or a duration such as "5m" or "1h30m")',
            param="keep_alive",
        )
    return sign * sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def format_schema(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """`format`: "json" (any JSON object), a JSON schema (enforced), or nothing."""
    if value is None or value == "":
        return None
    if value == "json":
        return ANY_OBJECT
    if isinstance(value, dict):
        schema_grammar(value, param="format")  # one that cannot be enforced is a 400 now
        return value
    raise InvalidRequestError(FORMAT_ERROR.format(value), param="format")


def reasoning_options(value: ThinkLevel | None) -> ReasoningOptions:
    """`think`: true/false switch the model's reasoning, a level ("low", "medium", "high", "max") sets its
    effort; unset leaves the model's default (on, for most reasoning models, as on Ollama)."""
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            raise InvalidRequestError(f'invalid think value: "{value}"', param="think")
        return ReasoningOptions(effort=value)
    return ReasoningOptions(enabled=value)


def created_at() -> str:
    """Now as Ollama writes `created_at`: RFC 3339 in UTC with microseconds and a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def local_time(unix: float) -> str:
    """A unix time as Ollama writes `modified_at`/`expires_at`: local time with its offset."""
    return datetime.fromtimestamp(unix).astimezone().isoformat()


def expires_at(seconds_left: float | None) -> str:
    """When an idle model unloads; never (no TTL) is Ollama's far future (now + max int64 ns)."""
    if seconds_left is None or seconds_left > FOREVER:
        far = datetime.now().astimezone() + timedelta(microseconds=(2**63 - 1) // 1000)
        return far.isoformat()
    return local_time(time.time() + seconds_left)
