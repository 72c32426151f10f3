"""A BERT GGUF's WordPiece vocabulary as a `tokenizers` tokenizer, the one both engines use for it.

llama.cpp stores WordPiece in "phantom space" form (a word-initial piece `▁foo`, a continuation
`bar`, control tokens verbatim); undone here, it is the vocabulary of the Hugging Face tokenizer the
file was converted from, with BERT's normalizer (lowercased and accents stripped, as llama.cpp's
own WordPiece always does) and [CLS] … [SEP] as the file's add_bos/add_eos flags say. This is
closer to the original model than llama.cpp's WordPiece, which splits Hangul and overlong words
differently (docs/COMPATIBILITY.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radis_mlx.errors import UnsupportedModelError
from radis_mlx.store.gguf import gguf_metadata

_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED = 1, 2, 3, 4, 5
PHANTOM_SPACE = "\u2581"
# Our converted cross-encoders carry a second copy of the vocabulary from this id on: the same tokens
# with the second segment's embedding folded in (engines/llamacpp/bert_to_gguf.py).
SEGMENT_OFFSET_KEY = "radis_mlx.segment_offset"


def is_wordpiece(meta: dict[str, Any]) -> bool:
    """Whether a GGUF header declares a WordPiece (BERT) vocabulary."""
    return meta.get("tokenizer.ggml.model") == "bert"


def wordpiece_tokenizer(path: Path) -> Any:
    """The `tokenizers` Tokenizer of a BERT GGUF's vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    meta = gguf_metadata(path, arrays=("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"))
    if not is_wordpiece(meta):
        raise UnsupportedModelError(f"{path.name} has no WordPiece vocabulary", param="model")
    size = meta.get(SEGMENT_OFFSET_KEY) or len(meta["tokenizer.ggml.tokens"])
    tokens: list[str] = meta["tokenizer.ggml.tokens"][:size]
    types: list[int] = (meta.get("tokenizer.ggml.token_type") or [_NORMAL] * size)[:size]
    vocab: dict[str, int] = {}
    specials, added = [], []
    for index, (token, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind == _CONTROL:
            text = token
            specials.append(token)
        elif token.startswith(PHANTOM_SPACE):
            text = token[1:]
        else:
            text = "##" + token
        if kind == _USER_DEFINED:
            added.append(text)
        vocab.setdefault(text, index)

    def name(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else None

    unknown = name("unknown") or "[UNK]"
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=unknown, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.add_tokens(added)
    first, last = name("bos"), name("eos")
    head = f"{first} " if first and meta.get("tokenizer.ggml.add_bos_token", True) else ""
    tail = f" {last}" if last and meta.get("tokenizer.ggml.add_eos_token", True) else ""
    marks = [(t, vocab[t]) for t in {first, last} if t and (t in head or t in tail)]
    pair = f"{head}$A{tail} $B:1" + (f"{tail}:1" if tail else "")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{head}$A{tail}", pair=pair, special_tokens=marks
    )
    return tokenizer
