"""MLX and llama.cpp serve the same GGUF weights: greedy answers should match.

Five chat prompts, greedy, 16 tokens, on both engines through the real server. They agree on 4 of 5.
The one that differs is the suite's own "What is the capital of France?": its first answer token is a
near-tie (MLX: "The" -1.881 vs "L" -1.965 log-prob; llama.cpp: "L" -1.853 vs "The" -2.010). The
weights are identical, but llama.cpp's CPU kernels quantize activations to 8 bits (Q8_1) for Q4_1
matmuls while MLX multiplies in float16, and on a 135M model at 4 bits that is enough to flip a
0.08-nat margin. Once the first token differs, the rest follows it.

Chat prompts only: for raw completions MLX's streaming detokenizer drops the leading space of the
first token (" Paris" comes back as "Paris"), a known MLX-engine difference outside this comparison.
"""

from __future__ import annotations

PROMPTS = [
    "What is the capital of France?",
    "Which city is the capital of France?",
    "Give me three tips for staying healthy.",
    "Write a haiku about the sea.",
    "What is 12 times 12?",
]


def greedy(client, model: str, prompt: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=16
    )
    return reply.choices[0].message.content


def test_greedy_parity_between_engines(client):
    pairs = [(greedy(client, "smollm2-mlx", p), greedy(client, "smollm2-llamacpp", p)) for p in PROMPTS]
    same = [mlx == llama for mlx, llama in pairs]
    report = "\n".join(
        f"{'=' if s else '≠'} {p!r}: mlx={m!r} llamacpp={ll!r}" for p, s, (m, ll) in zip(PROMPTS, same, pairs)
    )
    print(f"parity {sum(same)}/{len(PROMPTS)}\n{report}")
    assert sum(same) >= 4, report
