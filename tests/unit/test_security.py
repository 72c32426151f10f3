from __future__ import annotations

import pytest

from radis_mlx.api.guard import GuardMiddleware, host_name, is_loopback


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:1234", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:80", "[::1]"),
        ("evil.com:1234", "evil.com"),
    ],
)
def test_host_name(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


async def _status(middleware: GuardMiddleware, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        sent.append(message)

    middleware.app = app
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": headers}
    await middleware(scope, None, send)
    return int(sent[0]["status"])


@pytest.mark.anyio
async def test_a_non_ascii_key_matches_what_clients_send_as_utf8():
    guard = GuardMiddleware(None, api_keys=["clé-secrète"], allowed_hosts=None)  # type: ignore[arg-type]
    good = [(b"authorization", "Bearer clé-secrète".encode())]
    assert await _status(guard, good) == 200
    assert await _status(guard, [(b"x-api-key", "clé-secrète".encode())]) == 200
    assert await _status(guard, [(b"x-api-key", "clé-secrète".encode("latin-1"))]) == 401
    assert await _status(guard, [(b"x-api-key", b"cle-secrete")]) == 401


def test_keys_come_from_a_key_file_the_config_names_and_the_command_line(tmp_path, monkeypatch):
    import click

    from radis_mlx.cli.terminal import file_api_keys
    from radis_mlx.config import Config, ServerSettings, with_overrides

    monkeypatch.delenv("RADIS_API_KEY", raising=False)
    (tmp_path / "keys").write_text("# ours\nk1\n\n  k2 , k3\n")
    (tmp_path / "more").write_text("k4\n")
    config = Config(server=ServerSettings(api_key_file="keys"), base_dir=str(tmp_path))
    from_files = file_api_keys(config, tmp_path / "more")
    assert with_overrides(config, api_keys=("k5", *from_files)).server.api_keys == [
        "k5",
        "k1",
        "k2",
        "k3",
        "k4",
    ]
    with pytest.raises(click.UsageError, match="cannot read the API key file"):
        file_api_keys(config, tmp_path / "missing")
