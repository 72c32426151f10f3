"""Chat templates: where a model's is read from (store/templates.py), messages as templates take them."""

from __future__ import annotations

import json

import gguf
import pytest

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.chat_template import template_messages
from radis_mlx.generation.types import ChatMessage, ToolCall
from radis_mlx.store.templates import read_chat_template

TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def test_the_gguf_template_is_read_past_other_keys(tmp_path):
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(["<s>", "hello", "wörld"] * 100)  # an array of strings before the template
    writer.add_token_scores([0.5] * 300)
    writer.add_chat_template(TEMPLATE)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert read_chat_template(path) == TEMPLATE


def test_folders_and_missing_templates(tmp_path):
    assert read_chat_template(tmp_path) is None
    named = [{"name": "default", "template": "plain"}, {"name": "tool_use", "template": TEMPLATE}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": named}))
    assert read_chat_template(tmp_path) == TEMPLATE  # the one transformers renders tools with
    (tmp_path / "chat_template.jinja").write_text("jinja file")
    assert read_chat_template(tmp_path) == "jinja file"
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03")
    assert read_chat_template(tmp_path / "broken.gguf") is None


CALLS = [ChatMessage("assistant", None, tool_calls=[ToolCall("call_1", "f", '{"a": [1, "x"]}')])]


def test_tool_call_arguments_as_objects_or_text():
    [as_object] = template_messages(CALLS, object_arguments=True)
    assert as_object["content"] is None
    assert as_object["tool_calls"][0]["function"] == {"name": "f", "arguments": {"a": [1, "x"]}}
    [as_text] = template_messages(CALLS, object_arguments=False)
    assert as_text["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a": [1, "x"]}'},
    }
    [result] = template_messages([ChatMessage("tool", "42", tool_call_id="call_1")], object_arguments=True)
    assert result == {"role": "tool", "content": "42", "tool_call_id": "call_1"}


def test_arguments_that_are_not_json_are_a_request_error():
    broken = [ChatMessage("assistant", None, tool_calls=[ToolCall("c", "f", "{nope")])]
    with pytest.raises(InvalidRequestError) as info:
        template_messages(broken, object_arguments=True)
    assert info.value.param == "messages[0].tool_calls"
