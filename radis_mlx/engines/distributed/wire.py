"""What rank 0 and its followers exchange, in the same order on every rank.

Rank 0 broadcasts (as all_sum over zeros from the followers) a header per request, then the prompt
tokens; during generation each token, and after each token one flag that says whether to go on.
The HTTP thread hands rank 0's main thread a Job. Both the rank entry point (rank.py) and rank 0's
request logic (leader.py) use these; neither imports the other's module for them.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from radis_mlx.generation.types import GenerationRequest

GENERATE = 1
HEADER = 4  # [op, prompt length, max tokens, unused]


def share(values: Any, leader: bool) -> Any:
    """Rank 0's int32 values on every rank (all_sum over zeros from the others)."""
    import mlx.core as mx
    from mlx_lm.generate import generation_stream

    values = values.astype(mx.int32)
    # On mlx-lm's generation stream: one stream keeps every rank's collectives in the same order.
    return mx.distributed.all_sum(values if leader else mx.zeros_like(values), stream=generation_stream)


def control(stop: bool, leader: bool) -> bool:
    """After each token: rank 0 says whether generation ends here; every rank learns it."""
    import mlx.core as mx

    return bool(share(mx.array([int(stop)]), leader).item())


@dataclass
class Job:
    """A request handed from an HTTP thread to the main thread, and its way back."""

    request: GenerationRequest
    chat_template: str | None
    parse_special: bool = False  # the model entry's: special-token text in messages is special
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)  # the reply is fully written
    emitted: int = 0  # generated tokens already sent in chunks
