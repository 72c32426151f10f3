"""A model's runtime state in the pool: the state machine's states and the slot that holds them.

Only the pool (pool.py) changes a slot; everything else reads it.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from radis_mlx.config import ModelEntry
from radis_mlx.engines.base import Engine
from radis_mlx.pool.budget import Estimate
from radis_mlx.pool.discovery import Discovered


class ModelState(str, enum.Enum):
    """A model's place in the pool's state machine: NOT_LOADED → LOADING → LOADED → UNLOADING."""

    NOT_LOADED = "not-loaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


@dataclass
class PoolSlot:
    """One servable model and its runtime state."""

    model_id: str
    entry: ModelEntry
    state: ModelState = ModelState.NOT_LOADED
    engine: Engine | None = None
    active: int = 0
    last_used: float = 0.0
    created: int = field(default_factory=lambda: int(time.time()))
    loaded_at: float = 0.0
    crashes: int = 0
    last_crash: float = 0.0
    pinned: bool = False
    ttl: float | None = None  # the latest per-request or load-call ttl, over the entry's
    estimate: Estimate | None = None
    measured_bytes: int = 0
    loads: int = 0
    origin: str = "config"
    discovered: Discovered | None = None
    # The load in progress (concurrent first requests share it); set when no request holds the model.
    loading: asyncio.Task[Engine] | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()
        self.pinned = self.entry.pinned

    @property
    def held_bytes(self) -> int:
        """What this model holds or has reserved: measured weights (else estimated) + KV cache."""
        if self.state is ModelState.NOT_LOADED or self.estimate is None:
            return 0
        if self.measured_bytes:
            return self.measured_bytes + self.estimate.kv_cache
        return self.estimate.total
