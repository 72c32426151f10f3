"""Tool calling, the same on every engine: prompts that offer the tools, constraints, parsed calls.

Any API family fills GenerationRequest.tools / tool_choice / parallel_tool_calls and runs
`with_tools(engine, request)` (runner.generate_until does); chunks come back with `tool_calls`.

The format is read once per model from its chat template:
- native: the template renders `tools` and the model writes calls between its own markers; mlx-lm's
  parser for that family (picked from the template as mlx-lm does) parses them. A forced call
  (`required`, a named function) starts the reply with the start marker and constrains the JSON
  call after it, for the families whose call body is `{"name", "arguments"}` JSON.
- generic (the template knows no tools, llama.cpp's name for it): a system message lists the tools
  and the whole reply is constrained to `{"tool_calls": [{"name", "arguments"}]}` or
  `{"response": "..."}`, so even a tiny model emits a valid call.
Constraints are JSON schemas, so both engines enforce them with their existing constrained decoding.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.chat_template import template_tools
from radis_mlx.generation.grammar import schema_grammar
from radis_mlx.generation.tool_output import (
    ToolFormat,
    custom_call,
    generic_calls,
    loads,
    new_call,
    parse_json,
    parse_native,
)
from radis_mlx.generation.types import (
    ChatMessage,
    FunctionChoice,
    GenerationChunk,
    GenerationRequest,
    ToolDefinition,
)

Generate = Callable[[GenerationRequest], AsyncIterator[GenerationChunk]]

# mlx-lm's families whose call is `{"name": ..., "arguments": {...}}` JSON between the markers.
_JSON_BODIES = {"json_tools"}


@functools.lru_cache(maxsize=32)
def native_format(template: str | None) -> ToolFormat | None:
    """The native tool-call format a chat template implies; None: the generic format."""
    if not template or "tools" not in template:
        return None
    import importlib

    from mlx_lm.tokenizer_utils import _infer_tool_parser

    # mlx-lm's own inference, fed only the template (no vocabulary): the same answer on every engine.
    family = _infer_tool_parser(SimpleNamespace(chat_template=template, get_vocab=dict))
    if family is None:
        return None
    module = importlib.import_module(f"mlx_lm.tool_parsers.{family}")
    return ToolFormat(family, module.parse_tool_call, module.tool_call_start, module.tool_call_end)


def check_tools(request: GenerationRequest, parameters_param: str = "tools[{}].function.parameters") -> None:
    """Request errors in the tools: duplicate names, unenforceable schemas, an unknown tool_choice."""
    tools = request.tools or []
    names = [t.name for t in tools]
    for index, tool in enumerate(tools):
        if tool.name in names[:index]:
            raise InvalidRequestError(f"tool name '{tool.name}' appears twice", param=f"tools[{index}]")
        schema_grammar(tool.parameters, param=parameters_param.format(index))
    choice = request.tool_choice
    if request.tools is not None and not tools:
        raise InvalidRequestError("tools must not be empty", param="tools")
    if isinstance(choice, FunctionChoice) and choice.name not in names:
        raise InvalidRequestError(
            f"tool_choice names '{choice.name}', which is not in tools", param="tool_choice"
        )
    if choice == "required" and not tools:
        raise InvalidRequestError("tool_choice 'required' needs tools", param="tool_choice")
    if tools and choice != "none" and request.json_schema is not None:
        raise InvalidRequestError("response_format cannot be combined with tools", param="response_format")


def with_tools(
    generate: Generate, template: str | None, request: GenerationRequest, *, calls_parsed: bool = False
) -> AsyncIterator[GenerationChunk]:
    """`generate`, with the request's tools offered in the model's format and its calls parsed.

    `template` is the model's chat template (it decides the format); `calls_parsed`: the stream's calls
    are parsed already (gpt-oss's harmony, by the reasoning stage), so the tools only need offering.
    """
    history = any(m.tool_calls or m.role == "tool" for m in request.messages or [])
    if request.messages is None or not (request.tools or history):
        return generate(request)
    check_tools(request)
    if calls_parsed:
        offered = request.tools if request.tool_choice != "none" else None
        return generate(dataclasses.replace(request, tools=offered))
    native = native_format(template)
    offered = request.tools if request.tool_choice != "none" else None
    if native is None:
        messages = _generic_history(request.messages)
        if not offered:
            return generate(dataclasses.replace(request, messages=messages, tools=None))
        forced = _forced_custom(offered, request.tool_choice)
        if forced is not None:  # the reply is the tool's input, in its grammar
            messages = _with_system(messages, generic_instructions(offered, request.tool_choice))
            prepared = dataclasses.replace(request, messages=messages, tools=None, grammar=forced.grammar)
            return custom_call(generate(prepared), forced, request)
        schema = generic_schema(offered, request.tool_choice, request.parallel_tool_calls)
        messages = _with_system(messages, generic_instructions(offered, request.tool_choice))
        prepared = dataclasses.replace(request, messages=messages, tools=None, json_schema=schema)
        return parse_json(generate(prepared), generic_calls, request, call_depth=3)
    if not offered:
        return generate(dataclasses.replace(request, tools=None))
    forced = _forced_custom(offered, request.tool_choice)
    if forced is not None:
        return custom_call(generate(dataclasses.replace(request, grammar=forced.grammar)), forced, request)
    if request.tool_choice == "auto":
        return parse_native(generate(request), native, request, json_body=native.family in _JSON_BODIES)
    chosen = _chosen(offered, request.tool_choice)
    if native.family in _JSON_BODIES:
        # The reply starts inside a call: only the JSON body is generated, constrained.
        schema = {"anyOf": [call_schema(t) for t in chosen]} if len(chosen) > 1 else call_schema(chosen[0])
        prepared = dataclasses.replace(request, json_schema=schema, assistant_prefix=native.start + "\n")
        return parse_json(generate(prepared), lambda body: ([new_call(body)], ""), request, call_depth=1)
    # A family whose call syntax is no JSON: the generic constraint, over the model's native prompt.
    schema = generic_schema(chosen, request.tool_choice, request.parallel_tool_calls)
    prepared = dataclasses.replace(request, json_schema=schema)
    return parse_json(generate(prepared), generic_calls, request, call_depth=3)


def _forced_custom(tools: list[ToolDefinition], choice: Any) -> ToolDefinition | None:
    """The custom tool tool_choice names, when it has a grammar: the whole reply is then its input."""
    chosen = _chosen(tools, choice) if isinstance(choice, FunctionChoice) else []
    return chosen[0] if chosen and chosen[0].custom and chosen[0].grammar is not None else None


def _chosen(tools: list[ToolDefinition], choice: Any) -> list[ToolDefinition]:
    return [t for t in tools if t.name == choice.name] if isinstance(choice, FunctionChoice) else tools


def call_schema(tool: ToolDefinition) -> dict[str, Any]:
    """One call of this tool as JSON: its name, then arguments matching its parameters."""
    arguments = _closed(tool.parameters)
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _closed(parameters: dict[str, Any]) -> dict[str, Any]:
    """The declared arguments only, as OpenAI's strict mode (else a small model invents keys forever);
    left as is where the schema says otherwise or requires an undeclared key."""
    declared, required = parameters.get("properties"), parameters.get("required", [])
    if "additionalProperties" in parameters or not isinstance(declared, dict):
        return parameters
    if not isinstance(required, list) or not all(isinstance(r, str) and r in declared for r in required):
        return parameters
    return {**parameters, "additionalProperties": False}


def generic_schema(tools: list[ToolDefinition], choice: Any, parallel: bool) -> dict[str, Any]:
    """The generic format's reply: calls of the allowed tools, or (with `auto`) a text response."""
    chosen = _chosen(tools, choice)
    calls: dict[str, Any] = {
        "type": "array",
        "items": {"anyOf": [call_schema(t) for t in chosen]} if len(chosen) > 1 else call_schema(chosen[0]),
        "minItems": 1,
    }
    if not parallel or isinstance(choice, FunctionChoice):
        calls["maxItems"] = 1
    form = _object("tool_calls", calls)
    return form if choice != "auto" else {"anyOf": [form, _object("response", {"type": "string"})]}


def _object(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: schema}, "required": [key], "additionalProperties": False}


def generic_instructions(tools: list[ToolDefinition], choice: Any) -> str:
    """The system message that offers the tools to a model whose template knows none."""
    listed = json.dumps(template_tools(tools), ensure_ascii=False)
    call = '{"tool_calls": [{"name": <tool name>, "arguments": <arguments object>}]}'
    if isinstance(choice, FunctionChoice):
        how = f"Call the tool '{choice.name}', answering only with JSON: {call}"
    elif choice == "required":
        how = f"Call one or more tools, answering only with JSON: {call}"
    else:
        how = f'Answer only with JSON: either {call} to call tools, or {{"response": <your reply>}}'
    return f"You can call these tools:\n{listed}\n\n{how}"


def _with_system(messages: list[ChatMessage], text: str) -> list[ChatMessage]:
    """The tool instructions in the system message (one: some templates allow no second)."""
    if messages and messages[0].role == "system":
        return [ChatMessage("system", f"{messages[0].content}\n\n{text}"), *messages[1:]]
    return [ChatMessage("system", text), *messages]


def _generic_history(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Earlier calls and results as plain text, in the generic format's JSON, for templates without tools."""
    names = {c.id: c.name for m in messages for c in m.tool_calls or []}
    converted = []
    for message in messages:
        if message.tool_calls:
            calls = [{"name": c.name, "arguments": loads(c.arguments)} for c in message.tool_calls]
            text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
            content = f"{message.content}\n{text}" if message.content else text
            converted.append(ChatMessage("assistant", content))
        elif message.role == "tool":
            name = names.get(message.tool_call_id or "", "")
            result = {"tool_response": {"name": name, "content": message.content or ""}}
            converted.append(ChatMessage("user", json.dumps(result, ensure_ascii=False)))
        else:
            converted.append(ChatMessage(message.role, message.content or ""))
    return converted
