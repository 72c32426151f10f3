"""Models other apps downloaded, found read-only: LM Studio's folders, Ollama's store; shards and projectors
are never models (there, in model_dirs and in the Hugging Face cache)."""

from __future__ import annotations

import json
import logging
import os

import msgspec
import pytest

from radis_mlx.config import Config, ModelEntry, PoolSettings, SamplingDefaults, ServerSettings
from radis_mlx.engines.registry import choose_engine
from radis_mlx.errors import InvalidRequestError
from radis_mlx.pool import ModelPool
from radis_mlx.pool.budget import estimate
from radis_mlx.pool.discovery import ollama_defaults
from radis_mlx.schemas.chat import ChatCompletionRequest
from radis_mlx.store.gguf import is_gguf, model_files
from radis_mlx.store.lmstudio import lmstudio_homes, lmstudio_models_folders
from radis_mlx.store.ollama import display_name, ollama_models
from radis_mlx.store.templates import read_chat_template
from tests.support.hub import offline_hub
from tests.support.model_homes import OllamaStore, gguf_file

pytestmark = pytest.mark.anyio

TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME of its own, an empty Hugging Face cache, none of the apps' variables set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("LMSTUDIO_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(name, raising=False)
    offline_hub(monkeypatch, tmp_path / "hub")
    return home


def make_pool(tmp_path, models=None, **pool):
    config = Config(
        server=ServerSettings(cache_dir=str(tmp_path / "cache")),
        pool=PoolSettings(**pool),
        models=models or {},
        base_dir=str(tmp_path),
    )
    return ModelPool(config, discover_models=True, factory=None)


def origins(pool):
    return {slot.model_id: slot.origin for slot in pool.slots()}


# LM Studio


def test_lmstudio_home_order_env_then_pointer_then_default_folders(home, tmp_path, monkeypatch):
    assert lmstudio_homes() == []
    (home / ".cache" / "lm-studio").mkdir(parents=True)
    assert lmstudio_homes() == [home / ".cache" / "lm-studio"]
    (home / ".lmstudio").mkdir()
    assert lmstudio_homes() == [home / ".lmstudio", home / ".cache" / "lm-studio"]
    (home / ".lmstudio-home-pointer").write_text(f"{tmp_path / 'moved'}\n")
    assert lmstudio_homes() == [tmp_path / "moved"]
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "env"))
    assert lmstudio_homes() == [tmp_path / "env"]


def test_lmstudio_downloads_folder_setting_wins_over_home_models(home, tmp_path, caplog):
    (home / ".lmstudio" / "models").mkdir(parents=True)
    assert lmstudio_models_folders() == [home / ".lmstudio" / "models"]
    (tmp_path / "big-disk").mkdir()
    settings = home / ".lmstudio" / "settings.json"
    settings.write_text(json.dumps({"downloadsFolder": str(tmp_path / "big-disk")}))
    assert lmstudio_models_folders() == [tmp_path / "big-disk"]
    settings.write_text("{broken")
    os.utime(settings, ns=(1, 1))  # another version of the file, whatever the clock's resolution
    assert lmstudio_models_folders() == [home / ".lmstudio" / "models"]
    assert f"cannot read {settings}" in caplog.text


def test_lmstudio_layout_ids_and_what_is_not_a_model(home, tmp_path):
    models = home / ".lmstudio" / "models"
    gguf_file(models / "lmstudio-community" / "Qwen-GGUF" / "Qwen-Q4_K_M.gguf")
    gguf_file(models / "lmstudio-community" / "Qwen-GGUF" / "mmproj-Qwen-F16.gguf", arch="clip")
    gguf_file(models / "bartowski" / "Two-GGUF" / "Two-Q4_0.gguf")
    gguf_file(models / "bartowski" / "Two-GGUF" / "Two-Q8_0.gguf")
    gguf_file(models / "bartowski" / "Two-GGUF" / "projector.gguf", arch="clip")  # found by its metadata
    for shard in (1, 2, 3):
        gguf_file(models / "big" / "Huge-GGUF" / f"Huge-Q4_K_M-{shard:05d}-of-00003.gguf")
    mlx = models / "mlx-community" / "Tiny-4bit"
    mlx.mkdir(parents=True)
    (mlx / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (mlx / "model.safetensors").write_bytes(b"x" * 10)
    gguf_file(models / "loose.gguf")  # LM Studio indexes exactly <publisher>/<repo>/ files
    gguf_file(models / "publisher-only" / "loose.gguf")
    pool = make_pool(tmp_path)
    assert origins(pool) == {
        "bartowski/Two-GGUF/Two-Q4_0": "lmstudio",
        "bartowski/Two-GGUF/Two-Q8_0": "lmstudio",
        "big/Huge-GGUF": "lmstudio",
        "lmstudio-community/Qwen-GGUF": "lmstudio",
        "mlx-community/Tiny-4bit": "lmstudio",
    }
    huge = pool.get("big/Huge-GGUF")
    assert huge.discovered.path.name == "Huge-Q4_K_M-00001-of-00003.gguf"
    one_shard = huge.discovered.path.stat().st_size
    assert estimate(huge.discovered.path, 16).weights == 3 * one_shard  # the shards beside it count too
    assert pool.catalog.facts(huge).weights == 3 * one_shard
    assert make_pool(tmp_path, discover_lmstudio=False).slots() == []


async def test_rm_refuses_lmstudio_models_and_leaves_the_file(home, tmp_path):
    path = gguf_file(home / ".lmstudio" / "models" / "pub" / "Repo-GGUF" / "Repo-Q4_0.gguf")
    pool = make_pool(tmp_path)
    with pytest.raises(InvalidRequestError, match="LM Studio") as refused:
        await pool.catalog.delete("pub/Repo-GGUF")
    assert refused.value.code == "model_not_deletable" and refused.value.status_code == 400
    assert path.exists() and "pub/Repo-GGUF" in origins(pool)


# Shards and projectors in the places radis-mlx already searched


def test_model_dirs_and_the_hf_cache_skip_projectors_and_later_shards(home, tmp_path):
    folder = tmp_path / "ggufs"
    gguf_file(folder / "chat.gguf")
    gguf_file(folder / "chat-mmproj-f16.gguf")
    gguf_file(folder / "vision-encoder.gguf", arch="clip")
    gguf_file(folder / "split-00001-of-00002.gguf")
    gguf_file(folder / "split-00002-of-00002.gguf")
    repo = tmp_path / "hub" / "models--org--Vision-GGUF" / "snapshots" / "abc"
    gguf_file(repo / "Vision-Q4_K_M.gguf")
    gguf_file(repo / "mmproj-Vision-f16.gguf", general__type="mmproj", arch="clip")
    pool = make_pool(tmp_path, model_dirs=["ggufs"])
    assert origins(pool) == {"org/Vision-GGUF": "hf-cache", "chat": "model-dir", "split": "model-dir"}


def test_model_files_names_a_split_model_without_its_shard_suffix(tmp_path):
    first = gguf_file(tmp_path / "M-Q4_K_M-00001-of-00002.gguf")
    second = gguf_file(tmp_path / "M-Q4_K_M-00002-of-00002.gguf")
    assert model_files([first, second]) == [(first, "M-Q4_K_M")]


# Ollama


@pytest.mark.parametrize(
    ("parts", "name"),
    [
        (("registry.ollama.ai", "library", "llama3.2", "3b"), "llama3.2:3b"),
        (("registry.ollama.ai", "library", "llama3.2", "latest"), "llama3.2:latest"),
        (("registry.ollama.ai", "jmorgan", "foo", "latest"), "jmorgan/foo:latest"),
        (("ollama.com", "library", "qwen3", "8b"), "qwen3:8b"),
        (
            ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        ),
    ],
)
def test_ollama_names(parts, name):
    assert display_name(*parts) == name


def test_ollama_parameters_become_the_entry_defaults():
    params = {
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
        "repeat_penalty": 1.1,
        "num_predict": 256,
        "stop": ["<|im_end|>"],
        "num_ctx": 4096,
        "num_keep": 24,  # no such default here
        "min_p": 7,  # out of range: not used
    }
    defaults, context, unused = ollama_defaults(params, "Be brief.")
    assert defaults == SamplingDefaults(
        temperature=0.6,
        top_k=20,
        top_p=0.95,
        repetition_penalty=1.1,
        max_tokens=256,
        stop=["<|im_end|>"],
        system="Be brief.",
    )
    assert context == 4096 and unused == ["num_keep", "min_p"]


def test_ollama_models_are_served_under_their_names_with_their_settings(home, tmp_path, caplog):
    store = OllamaStore(home / ".ollama" / "models")
    weights = gguf_file(tmp_path / "weights", tokenizer__chat_template=TEMPLATE)
    store.add(
        "smollm:latest",
        weights,
        params={"temperature": 0.2, "stop": ["<|im_end|>"], "num_ctx": 1024},
        system="You are terse.",
        template="{{ .System }}{{ .Prompt }}",
    )
    store.add("smollm:q4", weights)
    with caplog.at_level(logging.INFO):
        pool = make_pool(tmp_path)
    assert origins(pool) == {"smollm:latest": "ollama", "smollm:q4": "ollama"}
    latest = pool.get("smollm")  # the default tag, reachable without it
    assert latest.model_id == "smollm:latest" and pool.get("smollm:q4").model_id == "smollm:q4"
    assert latest.entry.context_length == 1024
    assert latest.entry.defaults.temperature == 0.2 and latest.entry.defaults.system == "You are terse."
    blob = latest.discovered.path
    assert blob.parent.name == "blobs" and blob.suffix == "" and is_gguf(blob)
    assert "GGUF" in choose_engine(latest.entry, blob)[1]  # a GGUF without the suffix, not an MLX folder
    assert read_chat_template(blob) == TEMPLATE  # the GGUF's own Jinja template
    assert "the GGUF's own chat template is used" in caplog.text
    assert make_pool(tmp_path, discover_ollama=False).slots() == []


def test_the_model_defaults_fill_the_system_prompt_and_stop_of_a_chat():
    defaults = SamplingDefaults(system="You are terse.", stop=["END"])
    plain = chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    generation = plain.to_generation(defaults)
    assert [(m.role, m.content) for m in generation.messages] == [
        ("system", "You are terse."),
        ("user", "hi"),
    ]
    assert generation.stop == ["END"]
    messages = [{"role": "developer", "content": "Mine."}, {"role": "user", "content": "hi"}]
    own = chat_request({"model": "m", "stop": "STOP", "messages": messages}).to_generation(defaults)
    assert [m.content for m in own.messages] == ["Mine.", "hi"] and own.stop == ["STOP"]


def chat_request(body):
    return msgspec.convert(body, ChatCompletionRequest)


def test_a_corrupt_manifest_is_skipped_with_a_log_line(home, tmp_path, caplog):
    root = home / ".ollama" / "models"
    store = OllamaStore(root)
    weights = gguf_file(tmp_path / "weights")
    store.add("good:latest", weights)
    broken = store.add("broken:latest", weights)
    broken.write_text("{not json")
    escape = store.add("escape:latest", weights)
    manifest = json.loads(escape.read_text())
    manifest["layers"][0]["digest"] = "sha256:../../../../etc/passwd"
    escape.write_text(json.dumps(manifest))
    store.add("cloud:latest", weights, config={"remote_host": "https://ollama.com:443"})
    missing = store.add("missing:latest", gguf_file(tmp_path / "other-weights", layers=3))
    (root / "blobs" / json.loads(missing.read_text())["layers"][0]["digest"].replace(":", "-")).unlink()
    with caplog.at_level(logging.INFO):
        pool = make_pool(tmp_path)
        assert [m.name for m in ollama_models(root)] == ["good:latest"]
    assert origins(pool) == {"good:latest": "ollama"}
    assert f"skipping Ollama manifest {broken}" in caplog.text
    assert f"skipping Ollama manifest {escape}" in caplog.text and "bad layer digest" in caplog.text
    assert "cloud:latest is not served: a cloud model" in caplog.text


async def test_rm_refuses_ollama_models_and_leaves_the_blob(home, tmp_path):
    store = OllamaStore(home / ".ollama" / "models")
    manifest = store.add("smollm:latest", gguf_file(tmp_path / "weights"))
    pool = make_pool(tmp_path)
    blob = pool.get("smollm").discovered.path
    with pytest.raises(InvalidRequestError, match="ollama rm smollm:latest"):
        await pool.catalog.delete("smollm")
    assert blob.exists() and manifest.exists()


def test_ollama_models_env_moves_the_store(home, tmp_path, monkeypatch):
    store = OllamaStore(tmp_path / "elsewhere")
    store.add("smollm:latest", gguf_file(tmp_path / "weights"))
    assert make_pool(tmp_path).slots() == []
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "elsewhere"))
    assert origins(make_pool(tmp_path)) == {"smollm:latest": "ollama"}


def test_a_configured_entry_keeps_its_id_over_a_discovered_copy(home, tmp_path):
    path = gguf_file(home / ".lmstudio" / "models" / "pub" / "Repo-GGUF" / "Repo-Q4_0.gguf")
    pool = make_pool(tmp_path, {"mine": ModelEntry(source=str(path))})
    assert origins(pool) == {"mine": "config"}
