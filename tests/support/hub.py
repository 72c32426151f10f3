"""The Hugging Face hub, offline, over a cache folder a test lays out."""

from __future__ import annotations

from pathlib import Path


def offline_hub(monkeypatch, hub: Path) -> None:
    """huggingface_hub reads its environment at import: set the constants HF_HUB_OFFLINE/HF_HUB_CACHE set."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
