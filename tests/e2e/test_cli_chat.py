"""`radis-mlx chat` driven through stdin, `--json` for scripts, the CLI's messages when things go wrong."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.support.server import free_port

LLAMACPP = "smollm2-llamacpp"
STATS = re.compile(r"\[(\d+) tokens, [\d.]+ tok/s, prompt (\d+) tokens\]")


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RADIS_API_KEY", "RADIS_MLX_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "radis_mlx", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_chat_streams_replies_and_keeps_the_history(server):
    result = cli(
        "chat",
        LLAMACPP,
        "--url",
        server.base,
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "-v",
        stdin="My name is Ada.\n\nWhat is my name?\n/exit\nnever sent\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    stats = [(int(a), int(b)) for a, b in STATS.findall(result.stderr)]
    assert len(stats) == 2, result.stderr  # two requests: the empty line and what follows /exit are not sent
    (first_completion, first_prompt), (_, second_prompt) = stats
    # The second request carries the first exchange: its prompt holds both turns and the first reply.
    assert second_prompt > first_prompt + first_completion
    assert first_completion == 8  # --max-tokens reached the server


def test_chat_system_prompt_and_clear(server):
    result = cli(
        "chat",
        LLAMACPP,
        "--url",
        server.base,
        "--max-tokens",
        "4",
        "--system",
        "You answer in one word. " * 10,
        "-v",
        stdin="Hi\n/clear\nHi\n",  # end of input also leaves
    )
    assert result.returncode == 0, result.stderr
    prompts = [int(prompt) for _, prompt in STATS.findall(result.stderr)]
    # /clear forgets the exchange but keeps the system prompt: the same prompt again, and a long one.
    assert len(prompts) == 2 and prompts[0] == prompts[1] > 40


def test_chat_with_an_unknown_model_suggests_close_matches(server):
    result = cli("chat", "smollm2-llamacp", "--url", server.base, stdin="hi\n")
    assert result.returncode == 1
    assert "unknown model 'smollm2-llamacp'" in result.stderr and f"'{LLAMACPP}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_without_a_server_say_so():
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["chat", LLAMACPP], ["ps"], ["status"]):
        result = cli(*args, "--url", url)
        assert result.returncode == 1, args
        assert f"no radis-mlx server at {url}" in result.stderr and "radis-mlx serve" in result.stderr
        assert "Traceback" not in result.stderr


def test_status_json(server):
    up = cli("status", "--json", "--url", server.base)
    assert up.returncode == 0, up.stderr
    body = json.loads(up.stdout)
    assert body["running"] is True and body["url"] == server.url
    assert body["metrics"]["models_available"] >= 2 and body["metrics"]["uptime_seconds"] > 0
    assert isinstance(body["loaded"], list)
    down = cli("status", "--json", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and json.loads(down.stdout)["running"] is False


def test_ps_json_lists_a_loaded_model(server):
    cli("chat", LLAMACPP, "--url", server.base, "--max-tokens", "1", stdin="hi\n")
    result = cli("ps", "--json", "--url", server.base)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    row = next(m for m in body["data"] if m["id"] == LLAMACPP)
    assert row["state"] == "loaded" and row["size_bytes"] > 0 and row["engine"] == "llamacpp"
    assert body["used_bytes"] >= row["size_bytes"] and body["budget_bytes"] > 0


def test_ls_json(server):
    result = cli("ls", "--json", "--config", str(server.config_path))
    assert result.returncode == 0, result.stderr
    models = {m["id"]: m for m in json.loads(result.stdout)}
    assert models[LLAMACPP]["kind"] == "llm" and models["minilm"]["kind"] == "embedding"
    assert models[LLAMACPP]["downloaded"] is True and models[LLAMACPP]["format"] == "gguf"
    assert models["broken"]["downloaded"] is False and models["broken"]["size_bytes"] is None


def test_pull_of_a_mistyped_id_suggests_the_configured_one(server):
    result = cli("pull", "minlm", "--config", str(server.config_path))
    assert result.returncode == 1
    assert "unknown model 'minlm'; did you mean 'minilm'" in result.stderr
    assert "Traceback" not in result.stderr
