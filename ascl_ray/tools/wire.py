"""Tool wire formats: how a call looks in the model's text and how the answer is spliced back. Pure.

A wire format (plug-in point ``wire_format``, registry ``WIRE_FORMATS``) is a class built as
``Format(tools, *, answer_marker=None, max_call_chars=4096, inline=...)`` over the tools it carries
(``tools[0]`` is the primary tool). It

- ``parse(segment_text) -> ToolCall | None``: None = no call (a final answer); else a call whose
  ``error`` is set when malformed (bad syntax, unknown tool, arguments the tool's ``check`` refuses).
  Never raises;
- ``format_call(arguments, tool=None) -> str``: the exact text of a call (SFT demonstrations);
  ``parse(format_call(a))`` gives back ``tool.check(a)``;
- ``render_tool_turn(tokenizer, content) -> str``: the text to append after the closing tag so that
  generation resumes as the assistant (loss-masked by the rollout);
- ``stop_strings``: where generation stops for a call (the closing tag; keep it in the output);
- ``instructions() -> list[str]``: the system-prompt paragraphs describing every tool it carries.

Built-ins (``ascl_ray.tools.formats``): ``hermes`` and ``plain_tags``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Optional, Sequence

from ascl_ray.registry import Registry
from ascl_ray.tools.base import Tool, ToolCall, ToolError, clip

log = logging.getLogger(__name__)

__all__ = ["WireFormat", "WIRE_FORMATS", "register_wire_format", "render_chat_tool_turn", "CHATML_TOOL_TEMPLATE",
           "SENTINEL", "HERMES_FALLBACK", "RULES_WRAP", "TRUNCATION_MARK"]

WIRE_FORMATS = Registry("tool wire format", point="wire_format")
TRUNCATION_MARK = " [...]"
SENTINEL = "ASCL_SENTINEL_7f3a9c"
HERMES_FALLBACK = "<tool_response>\n{content}\n</tool_response>"
RULES_WRAP = "<rules>\n{content}\n</rules>"

# A Qwen2.5-style ChatML template with system/user/assistant/tool roles (tool turns are a user turn
# wrapping <tool_response>), no default system prompt. Offered for tiny test models.
CHATML_TOOL_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def register_wire_format(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator: register a WireFormat subclass under ``name``."""
    return WIRE_FORMATS.register(name, overwrite=overwrite)


def _clip(text: str, n: int = 2000) -> str:
    return clip(text, n, TRUNCATION_MARK)


def _after_sentinel(text: Any) -> Optional[str]:
    if not isinstance(text, str):
        return None
    i = text.find(SENTINEL)
    return None if i < 0 else text[i + len(SENTINEL):]


def render_chat_tool_turn(tokenizer: Any, content: str, fallback_wrap: str = HERMES_FALLBACK) -> str:
    """Render [user 'U', assistant SENTINEL, tool content] with the chat template and keep what follows
    the sentinel (assistant end, tool turn, new assistant header). If the template has no ``tool`` role
    (raises, or drops the content) use a ``user`` turn with ``fallback_wrap``-wrapped content instead."""
    head = [{"role": "user", "content": "U"}, {"role": "assistant", "content": SENTINEL}]
    kw = dict(tokenize=False, add_generation_prompt=True)
    try:
        suffix = _after_sentinel(tokenizer.apply_chat_template(head + [{"role": "tool", "content": content}], **kw))
        if suffix is not None and content.strip() in suffix:
            return suffix
    except Exception as e:  # noqa: BLE001 - templates without a tool role raise arbitrary errors
        log.debug("chat template has no tool role (%s); using the user-turn fallback", e)
    wrapped = fallback_wrap.format(content=content)
    suffix = _after_sentinel(tokenizer.apply_chat_template(head + [{"role": "user", "content": wrapped}], **kw))
    if suffix is None:
        raise ValueError("render_tool_turn: the chat template dropped the assistant message; cannot splice")
    return suffix


class WireFormat:
    """Base of the tag-delimited formats: ``open_tag`` body ``close_tag``; subclasses parse the body."""

    name = "base"
    open_tag = ""
    close_tag = ""
    fallback_wrap = "{content}"   # the tool turn as a user turn when the chat template has no tool role
    inline_wrap = RULES_WRAP      # inline=True: the answer is appended as this text, no chat turn

    def __init__(self, tools: Sequence[Tool], *, answer_marker: Optional[str] = None, max_call_chars: int = 4096,
                 inline: bool = False):
        if not tools:
            raise ValueError(f"wire format {self.name!r} needs at least one tool")
        self.tools = list(tools)
        self.answer_marker = answer_marker or None
        self.max_call_chars = max_call_chars
        self.inline = inline

    @property
    def primary(self) -> Tool:
        return self.tools[0]

    def tool(self, name: Optional[str]) -> Optional[Tool]:
        return next((t for t in self.tools if t.name == name), None)

    def with_tools(self, tools: Sequence[Tool]) -> "WireFormat":
        """The same format (options kept) over other tool instances."""
        out = copy.copy(self)
        out.tools = list(tools)
        return out

    @property
    def stop_strings(self) -> list[str]:
        return [self.close_tag]

    # ---- parsing ----------------------------------------------------------------------------
    def parse(self, segment_text: str) -> Optional[ToolCall]:
        """None: no call (a final answer). Else a ToolCall, with ``error`` set if malformed. Never raises."""
        try:
            return self._parse(segment_text)
        except Exception as e:  # noqa: BLE001 - the contract is: never raise
            raw = segment_text if isinstance(segment_text, str) else repr(segment_text)
            return ToolCall(None, {}, _clip(raw), error=f"internal parse error ({type(e).__name__})")

    def _parse(self, text: Any) -> Optional[ToolCall]:
        if not isinstance(text, str):
            return ToolCall(None, {}, _clip(repr(text)), error=f"segment is not text ({type(text).__name__})")
        o, c = text.find(self.open_tag), text.find(self.close_tag)
        if o < 0 and c < 0:
            return None
        if o < 0 or (0 <= c < o):
            end = c + len(self.close_tag)
            return ToolCall(None, {}, _clip(text[:end]), span=(0, end),
                            error=f"closing tag {self.close_tag} without an opening {self.open_tag}")
        if c < 0:
            return ToolCall(None, {}, _clip(text[o:]), span=(o, len(text)),
                            error=f"opening tag {self.open_tag} has no closing {self.close_tag} (truncated call?)")
        end = c + len(self.close_tag)
        raw, span = text[o:end], (o, end)

        def bad(msg: str, name: Optional[str] = None, args: Optional[dict] = None) -> ToolCall:
            return ToolCall(name, args or {}, _clip(raw), error=msg, span=span)

        if self.answer_marker and self.answer_marker in text[:o]:
            return bad(f"tool call after the final answer marker {self.answer_marker!r}")
        body = text[o + len(self.open_tag):c]
        if self.open_tag in body:
            return bad(f"nested {self.open_tag} tag inside a tool call")
        if len(body) > self.max_call_chars:
            return bad(f"tool call too long ({len(body)} chars > {self.max_call_chars})")
        name, args, err = self._parse_body(body)
        if err is not None:
            return bad(err, name, args if isinstance(args, dict) else None)
        tool = self.tool(name)
        if tool is None:  # a subclass resolved a name it does not carry
            return bad(f"unknown tool name {_clip(str(name), 80)!r}", name)
        try:
            args = tool.check(args)
        except ToolError as e:
            return bad(str(e), name)
        return ToolCall(name, args, raw, None, span)

    def _parse_body(self, body: str) -> tuple[Optional[str], Any, Optional[str]]:  # pragma: no cover
        """(tool name, raw arguments, error) of the text between the tags."""
        raise NotImplementedError

    def format_call(self, arguments: dict, tool: Optional[str] = None) -> str:  # pragma: no cover
        """The call of ``tool`` (default: the primary tool) with ``arguments``, as the model writes it."""
        raise NotImplementedError

    # ---- rendering ----------------------------------------------------------------------------
    def render_tool_turn(self, tokenizer: Any, content: str) -> str:
        """Exact text to append after the model's closing tag so generation resumes as the assistant."""
        if self.inline:
            return self.inline_wrap.format(content=content) + "\n"
        return render_chat_tool_turn(tokenizer, content, self.fallback_wrap)

    def instructions(self) -> list[str]:  # pragma: no cover
        """System-prompt paragraphs, one per tool it carries (each ends in a space)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[t.name for t in self.tools]})"
