"""Which models.toml radis-mlx reads (--config, $RADIS_MLX_CONFIG, ./models.toml, the user config) and the
starter it creates the user config from."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from radis_mlx.config import (
    ConfigError,
    DistributedSettings,
    LlamaCppSettings,
    ModelEntry,
    PoolSettings,
    SamplingDefaults,
    ServerSettings,
    config_path,
    read_config,
    starter_config,
    user_config_path,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty HOME, an empty working folder, none of the variables set."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "RADIS_MLX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return home


def test_the_resolution_order_is_flag_env_local_then_user(home, tmp_path, monkeypatch):
    user = home / ".config" / "radis-mlx" / "models.toml"
    assert config_path() == (user, "user config")
    (tmp_path / "work" / "models.toml").write_text("")
    assert config_path() == (Path("models.toml"), "./models.toml")
    monkeypatch.setenv("RADIS_MLX_CONFIG", str(tmp_path / "env.toml"))
    assert config_path() == (tmp_path / "env.toml", "$RADIS_MLX_CONFIG")
    assert config_path(tmp_path / "flag.toml") == (tmp_path / "flag.toml", "--config")


def test_xdg_config_home_moves_the_user_config_and_a_relative_one_is_ignored(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_config_path() == tmp_path / "xdg" / "radis-mlx" / "models.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/xdg")  # invalid per the XDG spec
    assert user_config_path() == home / ".config" / "radis-mlx" / "models.toml"


def test_serve_creates_the_user_config_once_and_never_overwrites_it(home):
    config, chosen, created = read_config(create=True)
    assert created and chosen.is_user_config
    assert chosen.path.read_text() == starter_config()
    assert list(config.models) == ["smollm2-135m-instruct", "all-minilm-l6-v2"]
    assert config.base_dir == str(chosen.path.parent)
    chosen.path.write_text('[models.mine]\nsource = "./mine.gguf"\n')
    config, _, created = read_config(create=True)
    assert not created and list(config.models) == ["mine"]


def test_reading_commands_see_the_starter_without_creating_the_file(home):
    config, chosen, created = read_config()
    assert not created and not chosen.path.exists()
    assert "smollm2-135m-instruct" in config.models


def test_a_missing_explicit_config_is_an_error_not_the_starter(home, tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        read_config(tmp_path / "nope.toml", create=True)
    assert not user_config_path().exists()


def test_the_repository_serves_the_starter_models():
    assert (REPO / "models.toml").read_text() == starter_config()


@pytest.mark.parametrize(
    "struct",
    [ServerSettings, PoolSettings, LlamaCppSettings, ModelEntry, SamplingDefaults, DistributedSettings],
)
def test_the_starter_explains_every_key(struct):
    comments = "\n".join(line for line in starter_config().splitlines() if line.startswith("#"))
    missing = [f.name for f in msgspec.structs.fields(struct) if not re.search(rf"\b{f.name}\b", comments)]
    assert missing == []
