"""engines/fim.py: FIM templates from a vocabulary (each family, and none), from files, rendered."""

from __future__ import annotations

import json

import gguf
import msgspec
import pytest

from radis_mlx.config import Config
from radis_mlx.generation.fim import render_fim
from radis_mlx.store.templates import detect_fim_template, read_fim_template

COMMON = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "def", "Ġadd", "<file_sep>", "<repo_name>"]


@pytest.mark.parametrize(
    ("tokens", "template"),
    [
        (
            ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],  # StarCoder, SmolLM
            "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
        ),
        (
            ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"],  # Qwen2.5-Coder
            "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
        ),
        (
            ["▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"],  # CodeLlama
            "▁<PRE> {prefix}▁<SUF>{suffix}▁<MID>",
        ),
        (["<PRE>", "<SUF>", "<MID>"], "<PRE>{prefix}<SUF>{suffix}<MID>"),
        (
            ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],  # DeepSeek-Coder
            "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
        ),
        (
            ["<fim-prefix>", "<fim-suffix>", "<fim-middle>"],
            "<fim-prefix>{prefix}<fim-suffix>{suffix}<fim-middle>",
        ),
        (
            ["<|code_prefix|>", "<|code_suffix|>", "<|code_middle|>"],  # GLM-4.5
            "<|code_prefix|>{prefix}<|code_suffix|>{suffix}<|code_middle|>",
        ),
        (["[PREFIX]", "[MIDDLE]", "[SUFFIX]"], "[SUFFIX]{suffix}[PREFIX]{prefix}"),  # Codestral, suffix first
    ],
)
def test_each_family_is_detected_from_its_tokens(tokens, template):
    assert detect_fim_template(set(COMMON + tokens)) == template


@pytest.mark.parametrize(
    "tokens",
    [
        [],  # the starter SmolLM2: chat and repository tokens, no FIM ones
        ["<fim_prefix>", "<fim_suffix>"],  # an incomplete set is no template
        ["<|fim_prefix|>", "<fim_suffix>", "<MID>"],  # nor are tokens of different families
    ],
)
def test_no_complete_fim_set_is_no_template(tokens):
    assert detect_fim_template(set(COMMON + tokens)) is None


def test_rendering_fills_both_placeholders_once():
    template = "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    # Braces in code, and placeholder text inside the prefix, stay as they are.
    prefix, suffix = "x = {'a': 1}\nf'{suffix}' if ", "\nreturn {}"
    assert render_fim(template, prefix, suffix) == f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    assert render_fim("[SUFFIX]{suffix}[PREFIX]{prefix}", "a", "b") == "[SUFFIX]b[PREFIX]a"


def _write_gguf(path, tokens):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_chat_template("{{ messages }}")  # a string before the vocabulary
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))  # an array after it
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()


def test_a_gguf_vocabulary_is_read(tmp_path):
    with_fim, without = tmp_path / "coder.gguf", tmp_path / "chat.gguf"
    filler = [f"tok{i}" for i in range(1000)]
    _write_gguf(with_fim, [*filler, "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", *filler])
    _write_gguf(without, [*filler, "<|fim_prefix|>", "<|fim_middle|>"])
    assert read_fim_template(with_fim) == "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    assert read_fim_template(without) is None


def test_the_starter_gguf_has_no_fim_tokens(smollm_gguf):
    assert read_fim_template(smollm_gguf) is None


def test_a_tokenizer_json_is_read(tmp_path):
    bpe, unigram, bare = tmp_path / "bpe", tmp_path / "unigram", tmp_path / "bare"
    for folder in (bpe, unigram, bare):
        folder.mkdir()
    added = [{"id": i, "content": t} for i, t in enumerate(["<fim_prefix>", "<fim_middle>", "<fim_suffix>"])]
    (bpe / "tokenizer.json").write_text(json.dumps({"added_tokens": added, "model": {"vocab": {"a": 3}}}))
    pieces = [["▁<PRE>", 0.0], ["▁<SUF>", 0.0], ["▁<MID>", 0.0], ["▁a", -1.0]]
    (unigram / "tokenizer.json").write_text(json.dumps({"added_tokens": [], "model": {"vocab": pieces}}))
    assert read_fim_template(bpe) == "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    assert read_fim_template(unigram) == "▁<PRE> {prefix}▁<SUF>{suffix}▁<MID>"
    assert read_fim_template(bare) is None  # no tokenizer.json: no template, no error


def _entry(template: str) -> bytes:
    return f'[models.m]\nsource = "x"\nfim_template = "{template}"\n'.encode()


def test_a_declared_template_must_name_both_placeholders():
    config = msgspec.toml.decode(_entry("[SUFFIX]{suffix}[PREFIX]{prefix}"), type=Config)
    assert config.models["m"].fim_template == "[SUFFIX]{suffix}[PREFIX]{prefix}"
    with pytest.raises(msgspec.ValidationError, match="fim_template"):
        msgspec.toml.decode(_entry("<pre>{prefix}<mid>"), type=Config)
