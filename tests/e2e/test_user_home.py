"""`radis-mlx serve` as a new user runs it: from an empty folder, with no models.toml, on a machine where
LM Studio and Ollama already downloaded models (the starter GGUF laid out as each app keeps it)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from openai import OpenAI

from radis_mlx.bench.servers import Process, free_port
from radis_mlx.config import Config, starter_config
from tests.support.e2e import FRANCE
from tests.support.model_homes import OllamaStore, gguf_file, link_or_copy

PLUGIN = Path(__file__).resolve().parents[2] / "scripts" / "radis-mlx.5s.py"
LMSTUDIO_ID = "lmstudio-community/SmolLM2-135M-Instruct-GGUF"
OLLAMA_ID = "smollm2:latest"
# Variables that would point the server at this machine's own config and model folders.
UNSET = (
    "XDG_CONFIG_HOME",
    "RADIS_MLX_CONFIG",
    "RADIS_API_KEY",
    "LMSTUDIO_HOME",
    "OLLAMA_MODELS",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
)
ENGINE = "mlx" if (platform.system(), platform.machine()) == ("Darwin", "arm64") else "llamacpp"


@pytest.fixture(scope="module")
def home(tmp_path_factory, smollm_gguf):
    """A HOME with LM Studio's and Ollama's folders, an empty working folder, and the server started there."""
    root = tmp_path_factory.mktemp("user-home")
    home, work = root / "home", root / "work"
    work.mkdir()
    repo = home / ".lmstudio" / "models" / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF"
    lmstudio_file = link_or_copy(smollm_gguf, repo / "SmolLM2-135M-Instruct-Q4_1.gguf")
    # A projector beside it: never a model; of another width (the starter's is 576), not this one's either.
    gguf_file(repo / "mmproj-SmolLM2-F16.gguf", arch="clip", clip__vision__projection_dim=64)
    ollama = OllamaStore(home / ".ollama" / "models")
    manifest = ollama.add(
        OLLAMA_ID,
        smollm_gguf,
        params={"temperature": 0, "num_ctx": 1024, "stop": ["<|im_end|>"]},
        system="You answer in one short sentence.",
        template="{{ .System }}{{ .Prompt }}",
    )
    env = {
        "HOME": str(home),
        "RADIS_MLX_CACHE": str(Config().cache_dir),  # the starter models already fetched
        "HF_HUB_CACHE": str(root / "hub"),
    }
    port = free_port()
    cmd = [sys.executable, "-m", "radis_mlx", "serve", "--port", str(port), "--no-fetch"]
    server = Process(cmd, root / "server.log", env, cwd=work, unset=UNSET)
    base = f"http://127.0.0.1:{port}"
    server.wait_healthy(f"{base}/health", 120)
    yield SimpleNamespace(
        home=home,
        work=work,
        env=env,
        base=base,
        server=server,
        lmstudio_file=lmstudio_file,
        manifest=manifest,
    )
    assert server.stop() == 0, server.log_tail()


def cli(home, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in UNSET}
    return subprocess.run(
        [sys.executable, "-m", "radis_mlx", *args],
        cwd=home.work,
        env={**environ, **home.env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed(home) -> dict[str, dict]:
    return {m["id"]: m for m in httpx.get(f"{home.base}/v1/models").json()["data"]}


def test_serve_from_an_empty_folder_creates_and_uses_the_user_config(home):
    user_config = home.home / ".config" / "radis-mlx" / "models.toml"
    assert user_config.read_text() == starter_config()
    assert (
        f"config {user_config} (user config, created now from the starter models)" in home.server.log_tail()
    )
    models = listed(home)
    assert models["smollm2-135m-instruct"]["origin"] == "config"
    assert models["all-minilm-l6-v2"]["origin"] == "config"
    assert not (home.work / "models.toml").exists()


def test_lm_studio_and_ollama_models_are_listed_with_their_origin(home):
    models = listed(home)
    assert models[LMSTUDIO_ID]["origin"] == "lmstudio"
    assert models[OLLAMA_ID]["origin"] == "ollama"
    assert models[OLLAMA_ID]["context_length"] == 1024  # the Modelfile's num_ctx
    assert not [model_id for model_id in models if "mmproj" in model_id.lower()]
    v0 = {m["id"]: m["origin"] for m in httpx.get(f"{home.base}/api/v0/models").json()["data"]}
    assert v0[LMSTUDIO_ID] == "lmstudio" and v0[OLLAMA_ID] == "ollama"


def menu(home) -> list[str]:
    """The menu-bar plugin's menu for the server, as SwiftBar runs it."""
    environ = {**os.environ, "RADIS_MLX_URL": home.base, "HOME": str(home.home)}
    environ.pop("RADIS_API_KEY", None)
    result = subprocess.run([str(PLUGIN)], env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_menu_bar_offers_discovered_models_under_their_source(home):
    for model in (LMSTUDIO_ID, OLLAMA_ID):
        httpx.post(f"{home.base}/api/v0/models/unload", json={"model": model}, timeout=60)
    lines = menu(home)
    ollama = lines.index("--Ollama | size=11 color=gray")
    assert lines[ollama + 1].startswith(f"--{OLLAMA_ID} | bash=") and "param1=load" in lines[ollama + 1]
    lmstudio = lines.index("--LM Studio | size=11 color=gray")
    assert lines[lmstudio + 1].startswith(f"--{LMSTUDIO_ID} | bash=")
    assert "--models.toml | size=11 color=gray" in lines


@pytest.mark.parametrize("model", [LMSTUDIO_ID, "smollm2"], ids=["lmstudio-file", "ollama-blob"])
def test_a_chat_on_each_layout(home, model):
    with OpenAI(base_url=f"{home.base}/v1", api_key="anything", max_retries=0, timeout=300) as client:
        reply = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    loaded = {m["id"]: m for m in httpx.get(f"{home.base}/api/v0/models/loaded").json()["data"]}
    served = LMSTUDIO_ID if model == LMSTUDIO_ID else OLLAMA_ID
    assert loaded[served]["engine"] == ENGINE


@pytest.mark.parametrize(
    ("model", "says"),
    [(LMSTUDIO_ID, "delete it in LM Studio"), ("smollm2", "use `ollama rm smollm2:latest`")],
)
def test_rm_refuses_another_apps_models(home, model, says):
    reply = httpx.delete(f"{home.base}/api/v0/models/{model}")
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_not_deletable" and says in error["message"]
    result = cli(home, "rm", model, "--url", home.base)
    assert result.returncode != 0 and says in result.stderr and "Traceback" not in result.stderr
    assert home.lmstudio_file.exists() and home.manifest.exists()
    blobs = list((home.home / ".ollama" / "models" / "blobs").iterdir())
    assert len(blobs) == 5  # model, template, system, params, config: all still there


def test_ls_and_config_say_where_models_come_from(home):
    table = cli(home, "ls").stdout.splitlines()
    assert table[0].split()[-1] == "FROM"
    rows = {line.split()[0]: line.split()[-1] for line in table[1:]}
    assert rows[LMSTUDIO_ID] == "lmstudio" and rows[OLLAMA_ID] == "ollama"
    assert rows["smollm2-135m-instruct"] == "config"
    shown = json.loads(cli(home, "config", "--json").stdout)
    assert shown["path"] == str(home.home / ".config" / "radis-mlx" / "models.toml")
    assert shown["reason"] == "user config" and shown["exists"]
    places = {p["source"]: p for p in shown["model_places"]}
    assert (
        places["LM Studio"]["path"] == str(home.home / ".lmstudio" / "models")
        and places["LM Studio"]["exists"]
    )
    assert places["Ollama"]["exists"] and places["Ollama"]["searched"]
    assert shown["settings"]["pool"]["discover_ollama"] is True


def test_the_menu_bar_shows_the_source_of_loaded_models(home):
    httpx.post(f"{home.base}/api/v0/models/load", json={"model": OLLAMA_ID}, timeout=300).raise_for_status()
    row = next(line for line in menu(home) if line.startswith(f"{OLLAMA_ID}  "))
    assert row.endswith(f"({ENGINE}, Ollama)")
