"""Encoder inputs as token ids: texts, token-id lists and (query, document) pairs, fitted to a length.

One policy for every engine. A text gets the tokenizer's special tokens ([CLS] … [SEP]); token ids
get them unless they already carry them. Over the model's length, a text keeps its head and its
closing special tokens (as Hugging Face tokenizers truncate, and sentence-transformers does); a pair
keeps the whole query and cuts the document. With truncate = false either is a 400 instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radis_mlx.errors import ContextLengthExceeded
from radis_mlx.generation.types import Tokenized, check_token_ids


@dataclass
class Pair:
    """One (query, document) sequence: token ids and their segment (token type) ids."""

    ids: list[int]
    type_ids: list[int]


class EncoderTokenizer:
    """A `tokenizers` tokenizer (tokenizer.json, or rebuilt from a GGUF) with the fitting policy."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, max_length: int, truncate: bool) -> None:
        # tokenizer.json may carry fixed padding/truncation (all-MiniLM: pad to 128); we fit ourselves.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.truncate = truncate
        self.prefix, self.suffix = special_tokens(tokenizer)

    @classmethod
    def from_file(cls, path: Path, **settings: Any) -> EncoderTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), **settings)

    def sequences(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        """Token ids per input, special tokens included, fitted to the maximum length (or a 400)."""
        items: list[str | list[int]] = list(inputs)
        texts = [x for x in items if isinstance(x, str)]
        encoded = iter(e.ids for e in self.tokenizer.encode_batch(texts)) if texts else iter(())
        sequences = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                ids = list(next(encoded))
            else:
                check_token_ids(item, self.vocab_size, "input")
                ids = with_special_tokens(item, self.prefix, self.suffix)
            sequences.append(fit(ids, self.max_length, self.suffix, self.truncate, index))
        return sequences

    def pairs(self, query: str, documents: list[str]) -> list[Pair]:
        """[CLS] query [SEP] document [SEP] per document, the document cut to fit (or a 400)."""
        head = self.tokenizer.encode(query, add_special_tokens=False)
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(True) - len(head.ids)
        if room < 1:
            raise ContextLengthExceeded(
                f"the query has {len(head.ids)} tokens and leaves no room for a document within this "
                f"model's maximum of {self.max_length} tokens per pair",
                param="query",
            )
        pairs = []
        for index, tail in enumerate(self.tokenizer.encode_batch(documents, add_special_tokens=False)):
            if len(tail.ids) > room:
                if not self.truncate:
                    raise ContextLengthExceeded(
                        f"documents[{index}] with the query is {len(tail.ids) - room + self.max_length} "
                        f"tokens; this model's maximum is {self.max_length} tokens per pair",
                        param="documents",
                    )
                tail.truncate(room)
            both = self.tokenizer.post_process(head, tail, add_special_tokens=True)
            pairs.append(Pair(list(both.ids), list(both.type_ids)))
        return pairs

    def tokenized(self, text: str, add_special: bool, with_pieces: bool) -> Tokenized:
        """The ids of a text before any fitting (the token utilities), and each token's vocabulary
        entry if asked (WordPiece: `##ing` for a word's continuation)."""
        ids = list(self.tokenizer.encode(text, add_special_tokens=add_special).ids)
        pieces = [(self.tokenizer.id_to_token(i) or "").encode() for i in ids] if with_pieces else None
        return Tokenized(ids, pieces)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))


def with_special_tokens(ids: list[int], prefix: list[int], suffix: list[int]) -> list[int]:
    """Token ids are the text's tokens: add the model's [CLS]/[SEP] unless already there."""
    has_prefix = ids[: len(prefix)] == prefix
    has_suffix = not suffix or ids[-len(suffix) :] == suffix
    if has_prefix and has_suffix and len(ids) >= len(prefix) + len(suffix):
        return list(ids)
    return prefix + list(ids) + suffix


def fit(ids: list[int], limit: int, suffix: list[int], truncate: bool, index: int) -> list[int]:
    """An input within `limit` tokens: cut keeping its closing special tokens, or a 400 (truncate off)."""
    if len(ids) <= limit:
        return ids
    if not truncate:
        raise ContextLengthExceeded(
            f"input[{index}] has {len(ids)} tokens; this model's maximum is {limit} tokens", param="input"
        )
    # Keep the closing special tokens, as Hugging Face tokenizers truncate.
    return ids[: limit - len(suffix)] + suffix


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own tokens (BERT: [CLS], [SEP])."""
    full = tokenizer.encode("a").ids
    core = tokenizer.encode("a", add_special_tokens=False).ids
    for at in range(len(full) - len(core) + 1):
        if full[at : at + len(core)] == core:
            return full[:at], full[at + len(core) :]
    return [], []
