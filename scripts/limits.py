"""Time oversized bodies against the real app over a fake engine, in process (docs/RELIABILITY.md).

Run from the repository root: `python scripts/limits.py` (with PYTHONPATH set to the tree to measure).
"""

from __future__ import annotations

import json
import logging
import time

from litestar.testing import TestClient

from tests.support.fakes import fake_app

HI = [{"role": "user", "content": "hi"}]


def tool(index: int) -> dict:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": f"f{index}", "parameters": parameters}}


def main() -> None:
    logging.disable(logging.CRITICAL)
    deep = '{"a": ' * 3000 + "1" + "}" * 3000
    cases = {
        "5000 tools": (
            "/v1/chat/completions",
            {"model": "fake", "messages": HI, "tools": [tool(i) for i in range(5000)]},
        ),
        "1000 stops": (
            "/v1/chat/completions",
            {"model": "fake", "messages": HI, "stop": [f"s{i}" for i in range(1000)]},
        ),
        "1500 prompts": ("/v1/completions", {"model": "fake", "prompt": ["hi"] * 1500, "max_tokens": 1}),
        "3000-deep schema": (
            "/v1/chat/completions",
            {"model": "fake", "messages": HI, "response_format": "DEEP"},
        ),
    }
    with TestClient(app=fake_app()) as client:
        client.post("/v1/chat/completions", json={"model": "fake", "messages": HI, "max_tokens": 1})
        for name, (path, body) in cases.items():
            text = json.dumps(body).replace(
                '"DEEP"', '{"type": "json_schema", "json_schema": {"schema": ' + deep + "}}"
            )
            started = time.perf_counter()
            reply = client.post(path, content=text, headers={"content-type": "application/json"})
            took = time.perf_counter() - started
            print(f"{name}: {reply.status_code} in {took:.3f} s ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
