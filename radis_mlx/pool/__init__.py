"""The model pool: which models exist, which are loaded, and who is using them (pool.py)."""

from radis_mlx.pool.pool import ModelPool
from radis_mlx.pool.state import ModelState, PoolSlot

__all__ = ["ModelPool", "ModelState", "PoolSlot"]
