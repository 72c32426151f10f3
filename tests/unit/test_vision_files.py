"""Which model files read images: a GGUF's projector found beside it only when it fits, an MLX folder's
vision tower only with mlx-vlm installed (or kind = "vlm", whose load then says what is missing)."""

from __future__ import annotations

import json

from radis_mlx.config import ModelEntry
from radis_mlx.engines import registry
from radis_mlx.store.vision import find_projector, has_vision_tower
from tests.support.model_homes import gguf_file


def test_a_projector_beside_a_gguf_serves_it_only_when_its_width_fits(tmp_path):
    model = gguf_file(tmp_path / "model-Q4_K_M.gguf")  # embedding_length 256
    assert find_projector(model) is None
    gguf_file(tmp_path / "mmproj-other-f16.gguf", arch="clip", clip__vision__projection_dim="1024")
    assert find_projector(model) is None  # another model's projector in the same folder
    fitting = gguf_file(tmp_path / "mmproj-model-f16.gguf", arch="clip", clip__vision__projection_dim="256")
    assert find_projector(model) == fitting
    assert find_projector(fitting.with_name("blob-without-suffix")) is None


def test_a_vision_folder_reads_images_with_mlx_vlm_or_when_declared(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "smolvlm", "vision_config": {}}))
    assert has_vision_tower(tmp_path)
    detected, declared = ModelEntry(source=str(tmp_path)), ModelEntry(source=str(tmp_path), kind="vlm")
    monkeypatch.setattr(registry, "mlx_vlm_installed", lambda: False)
    assert not registry.reads_images(detected, tmp_path, None)  # text-only through mlx-lm, as before
    assert registry.reads_images(declared, tmp_path, None)
    monkeypatch.setattr(registry, "mlx_vlm_installed", lambda: True)
    assert registry.reads_images(detected, tmp_path, None)
    text = ModelEntry(source=str(tmp_path / "m.gguf"), engine="llamacpp")
    assert not registry.reads_images(text, tmp_path / "m.gguf", None)
    assert registry.reads_images(text, tmp_path / "m.gguf", tmp_path / "mmproj.gguf")


def test_a_gguf_vision_model_runs_on_llamacpp_on_every_host(tmp_path):
    entry = ModelEntry(source="m.gguf", kind="vlm")
    assert registry.choose_engine(entry, tmp_path / "m.gguf")[0] == "llamacpp"
