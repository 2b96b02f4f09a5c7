"""The built-in wire formats (contract in ``ascl_ray.tools.wire``). Pure.

- ``hermes`` (default, Qwen/Hermes style): the model writes
  ``<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>``; stop string ``</tool_call>``; the
  answer is a ``tool`` turn rendered by the model's chat template. Dispatches on ``name`` among the
  tools it carries, so any number of tools share it; the system prompt describes each of them.
- ``plain_tags``: ``<rules_query>free text</rules_query>``; stop string ``</rules_query>``; answered
  inline as ``<rules>\\n...\\n</rules>\\n`` (``inline=True``, default) or as a chat-template tool turn
  (``inline=False``). It carries exactly one tool: the free text becomes that tool's arguments through
  ``tool.from_text`` (for ``retrieve_safety_rules``: "question", "category" or "category: question").
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from ascl_ray.tools.base import Tool, ToolError, json_type
from ascl_ray.tools.wire import HERMES_FALLBACK, RULES_WRAP, WireFormat, _clip, register_wire_format

__all__ = ["HermesFormat", "PlainTagsFormat"]


@register_wire_format("hermes")
class HermesFormat(WireFormat):
    name = "hermes"
    open_tag, close_tag = "<tool_call>", "</tool_call>"
    fallback_wrap = HERMES_FALLBACK

    def _unknown_name(self, name: str) -> str:
        if len(self.tools) == 1:
            return f"unknown tool name {_clip(name, 80)!r}; the only tool is {self.primary.name!r}"
        return f"unknown tool name {_clip(name, 80)!r}; the tools are {', '.join(repr(t.name) for t in self.tools)}"

    def _parse_body(self, body: str) -> tuple[Optional[str], Any, Optional[str]]:
        s = body.strip()
        if not s:
            return None, None, "empty tool call: expected a JSON object"
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            return None, None, f"invalid JSON ({e.msg} at char {e.pos})"
        except (ValueError, RecursionError) as e:
            return None, None, f"invalid JSON ({type(e).__name__})"
        if not isinstance(obj, dict):
            return None, None, f"tool call must be a JSON object, got {json_type(obj)}"
        if "name" not in obj:
            return None, None, "missing field 'name'"
        name = obj["name"]
        if not isinstance(name, str):
            return None, None, f"field 'name' must be a string, got {json_type(name)}"
        if self.tool(name) is None:
            return name, None, self._unknown_name(name)
        if "arguments" not in obj:
            return name, None, "missing field 'arguments'"
        args = obj["arguments"]
        if isinstance(args, str):  # OpenAI style: arguments as a JSON-encoded string
            try:
                args = json.loads(args)
            except (ValueError, RecursionError):
                return name, None, "field 'arguments' is a string that is not a JSON object"
        if not isinstance(args, dict):
            return name, None, f"field 'arguments' must be a JSON object, got {json_type(args)}"
        return name, args, None

    def format_call(self, arguments: dict, tool: Optional[str] = None) -> str:
        name = tool or self.primary.name
        if self.tool(name) is None:
            raise ValueError(f"hermes.format_call: {self._unknown_name(name)}")
        s = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        for tag in (self.open_tag, self.close_tag):  # keep tags out of the JSON text (escape '<')
            s = s.replace(tag, "\\u003c" + tag[1:])
        return f"{self.open_tag}{s}{self.close_tag}"

    def instructions(self) -> list[str]:
        out = []
        for t in self.tools:
            example = json.dumps({"name": t.name, "arguments": t.example_arguments()})
            out.append(f"You may {t.purpose} with the tool {t.name}. To call it, write:\n"
                       f"{self.open_tag}{example}{self.close_tag}\n{t.usage_note()}{t.context_note()}")
        return out


@register_wire_format("plain_tags")
class PlainTagsFormat(WireFormat):
    name = "plain_tags"
    open_tag, close_tag = "<rules_query>", "</rules_query>"
    fallback_wrap = RULES_WRAP

    def __init__(self, tools: Sequence[Tool], *, inline: bool = True, **opts: Any):
        if len(tools) > 1:
            raise ValueError(f"plain_tags carries one tool's free-text query, got tools {[t.name for t in tools]}; "
                             "use the hermes format for several tools")
        super().__init__(tools, inline=inline, **opts)

    def _parse_body(self, body: str) -> tuple[Optional[str], Any, Optional[str]]:
        s = body.strip()
        name = self.primary.name
        if not s:
            return name, None, f"empty query inside {self.open_tag}{self.close_tag}"
        try:
            return name, self.primary.from_text(s), None
        except ToolError as e:
            return name, None, str(e)

    def format_call(self, arguments: dict, tool: Optional[str] = None) -> str:
        if tool is not None and tool != self.primary.name:
            raise ValueError(f"plain_tags.format_call: the only tool is {self.primary.name!r}, not {tool!r}")
        body = self.primary.to_text(arguments)
        if self.open_tag in body or self.close_tag in body:
            raise ValueError(f"plain_tags cannot encode a query containing {self.open_tag} or {self.close_tag}")
        return f"{self.open_tag}{body}{self.close_tag}"

    def instructions(self) -> list[str]:
        t = self.primary
        return [f"You may {t.purpose}: write {self.open_tag}{t.text_hint}{self.close_tag} and {t.returns} "
                f"returned in <rules></rules>; then continue and answer. {t.context_note()}"]
