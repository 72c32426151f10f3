"""The grammar as an mlx-lm logits processor: tokens the grammar cannot take next are masked out."""

from __future__ import annotations

from typing import Any

from radis_mlx.errors import EngineError
from radis_mlx.generation.grammar import schema_error


class GrammarMask:
    """An mlx-lm logits processor: forbids tokens the grammar cannot take next.

    mlx-lm calls it with every token so far (prompt included) before each sampling step; the tokens
    after the prompt are fed to the matcher first. Once the grammar is complete only EOS is allowed.
    """

    def __init__(self, tokenizer: Any, grammar: str, prompt_length: int) -> None:
        import llguidance
        import llguidance.numpy

        self.matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise schema_error(self.matcher.get_error())
        self._seen = prompt_length
        self._bitmask = llguidance.numpy.allocate_token_bitmask(1, tokenizer.vocab_size)
        self._fill = llguidance.numpy.fill_next_token_bitmask

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        new: list[int] = tokens[self._seen :].tolist() if tokens.size > self._seen else []
        self._seen = tokens.size
        if new and self.matcher.is_stopped():
            return logits  # this follows the forced EOS: mlx-lm's step ahead, never used
        if new and not self.matcher.consume_tokens(new):
            raise EngineError(f"the grammar rejected a sampled token: {self.matcher.get_error()}")
        self._fill(self.matcher, self._bitmask)
        # Unpack 32 allowed-bits per int32 word with plain mx ops (llguidance.mlx needs Metal).
        words = mx.array(self._bitmask)
        bits = (words[..., None] >> mx.arange(32, dtype=mx.int32)) & 1
        allowed = bits.reshape(1, -1)[:, : logits.shape[-1]]
        if allowed.shape[-1] < logits.shape[-1]:  # the model's vocabulary is padded past the tokenizer's
            allowed = mx.pad(allowed, [(0, 0), (0, logits.shape[-1] - allowed.shape[-1])])
        return mx.where(allowed.astype(mx.bool_), logits, -mx.inf)
