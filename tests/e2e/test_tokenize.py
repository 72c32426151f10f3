"""/tokenize and /detokenize on the real server: the ids generation uses, on both engines."""

from __future__ import annotations

import httpx
import pytest
from tokenizers import Tokenizer

PROMPT = "The capital of France is Paris 🍕, naïvely <|im_start|> said."


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base}{path}", json=body, timeout=120)


def test_count_is_the_completion_usage_and_detokenize_round_trips(server, client, model):
    reply = post(server, "/tokenize", {"model": model, "prompt": PROMPT}).json()
    completion = client.completions.create(model=model, prompt=PROMPT, max_tokens=1, temperature=0)
    assert reply["count"] == len(reply["tokens"]) == completion.usage.prompt_tokens
    assert reply["max_model_len"] == 2048
    assert post(server, "/v1/detokenize", {"model": model, "tokens": reply["tokens"]}).json() == {
        "content": PROMPT,
        "prompt": PROMPT,
    }
    # The completion of the ids is the completion of the text (the same prompt).
    by_ids = client.completions.create(model=model, prompt=reply["tokens"], max_tokens=1, temperature=0)
    assert by_ids.usage.prompt_tokens == completion.usage.prompt_tokens


def test_both_engines_give_the_same_ids_and_pieces(server):
    body = {"content": PROMPT, "with_pieces": True}
    mlx, llama = (
        post(server, "/tokenize", {**body, "model": f"smollm2-{e}"}).json() for e in ("mlx", "llamacpp")
    )
    assert mlx == llama
    pieces = [t["piece"] for t in mlx["tokens"]]
    raw = b"".join(bytes(p) if isinstance(p, list) else p.encode() for p in pieces)
    assert raw == PROMPT.encode()  # every byte once; the emoji's partial bytes come as byte lists
    assert any(isinstance(p, list) for p in pieces)
    special = [t for t in mlx["tokens"] if t["piece"] == "<|im_start|>"]
    assert len(special) == 1  # special tokens written in the text are parsed, as in a prompt


def test_an_embedder_tokenizes_as_it_embeds(server, client, minilm_dir):
    tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    for model in ("minilm", "minilm-mlx"):
        reply = post(
            server, "/v1/tokenize", {"model": model, "prompt": PROMPT, "return_token_strs": True}
        ).json()
        assert reply["tokens"] == tokenizer.encode(PROMPT).ids and reply["max_model_len"] == 256
        assert reply["token_strs"][0] == "[CLS]"
        embedded = client.embeddings.create(model=model, input=PROMPT)
        assert embedded.usage.prompt_tokens == reply["count"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"model": "smollm2-mlx"}, "content"),
        ("/tokenize", {"model": "smollm2-llamacpp", "content": ["a"]}, "content"),
        ("/detokenize", {"model": "smollm2-mlx", "tokens": [1, 10**9]}, "tokens"),
        ("/detokenize", {"model": "smollm2-llamacpp", "tokens": [-1]}, "tokens"),
        ("/detokenize", {"model": "minilm", "tokens": [30522]}, "tokens"),
        ("/v1/detokenize", {"model": "smollm2-mlx", "tokens": "1 2"}, "tokens"),
    ],
)
def test_bad_requests_are_400(server, path, body, param):
    response = post(server, path, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_model_is_404(server):
    assert post(server, "/tokenize", {"model": "nope", "content": "a"}).status_code == 404
