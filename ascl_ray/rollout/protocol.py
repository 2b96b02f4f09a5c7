"""Kept for old imports: the single-tool protocol API of before ``ascl_ray.tools``. Pure; new code uses
``ascl_ray.tools`` (tools, wire formats, ``ToolProtocol``, ``ToolSession``) directly.

Here a protocol is one ``retrieve_safety_rules`` tool in wire format ``hermes`` | ``plain_tags`` whose
retriever is given per call, as before::

    proto = make_protocol("hermes", categories=retriever.categories, max_tool_calls=1)
    res = proto.run(proto.parse(segment_text), retriever, call_index=0, policy=None)
    session = ToolSession(proto, retriever); session.step(segment_text); session.record()

Same texts, same parsing, same statuses as ``ascl_ray.tools`` (it is a thin layer over it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Optional, Sequence

from ascl_ray.registry import get_registry
from ascl_ray.tools import protocol as _tp
from ascl_ray.tools.base import ToolCall, ToolResult
from ascl_ray.tools.safety_rules import (ALLOWED_ARGS, LIMIT_REACHED_TEXT, MALFORMED_CALL_TEXT, TOOL_FAILURE_TEXT,
                                         TOOL_NAME, SafetyRulesTool)
from ascl_ray.tools.wire import (CHATML_TOOL_TEMPLATE, HERMES_FALLBACK, RULES_WRAP, SENTINEL, TRUNCATION_MARK,
                                 render_chat_tool_turn)

__all__ = ["TOOL_NAME", "MALFORMED_CALL_TEXT", "LIMIT_REACHED_TEXT", "TOOL_FAILURE_TEXT", "TRUNCATION_MARK",
           "SENTINEL", "HERMES_FALLBACK", "RULES_WRAP", "ALLOWED_ARGS", "CHATML_TOOL_TEMPLATE", "ToolCall",
           "ToolResult", "ToolProtocol", "PROTOCOLS", "make_protocol", "format_instructions", "ToolSession",
           "render_chat_tool_turn"]


class ToolProtocol(_tp.ToolProtocol):
    """One ``retrieve_safety_rules`` tool (no retriever bound) in wire format ``fmt_name``; the old
    options: tool_name, max_tool_calls, categories, answer_marker, max_call_chars, max_query_chars,
    max_response_chars, inline, require_category."""

    def __init__(self, fmt_name: str, *, tool_name: str = TOOL_NAME, max_tool_calls: int = 1,
                 categories: Optional[Sequence[str]] = None, answer_marker: Optional[str] = None,
                 max_call_chars: int = 4096, max_query_chars: int = 1000, max_response_chars: Optional[int] = None,
                 inline: Optional[bool] = None, require_category: bool = False):
        tool = SafetyRulesTool(name=tool_name, categories=categories, require_category=require_category,
                               max_query_chars=max_query_chars)
        opts: dict = {"answer_marker": answer_marker, "max_call_chars": max_call_chars}
        if inline is not None:
            opts["inline"] = inline
        fmt = get_registry("wire_format").create(fmt_name, [tool], **opts)
        super().__init__(fmt, max_tool_calls=max_tool_calls, max_response_chars=max_response_chars)

    @property
    def tool_name(self) -> str:
        return self.primary.name

    @property
    def categories(self) -> Optional[list]:
        return self.primary.categories  # type: ignore[attr-defined]

    @property
    def require_category(self) -> bool:
        return self.primary.require_category  # type: ignore[attr-defined]

    def _bound(self, retriever: Any) -> "ToolProtocol":
        return self.with_tools([dataclasses.replace(self.primary, retriever=retriever)])  # type: ignore[arg-type]

    def run(self, call: Optional[ToolCall], retriever: Any = None, call_index: int = 0,  # type: ignore[override]
            policy: Optional[Mapping[str, str]] = None) -> ToolResult:
        """Execute with ``retriever`` (``retrieve(query, category, policy=None) -> str``)."""
        return _tp.ToolProtocol.run(self._bound(retriever), call, call_index, policy)

    def execute(self, call: Optional[ToolCall], retriever: Any, call_index: int = 0) -> str:
        """The tool response content for ``call`` (error / limit texts included)."""
        return self.run(call, retriever, call_index).content

    def format_instructions(self, categories: Optional[Sequence[str]] = None) -> str:  # type: ignore[override]
        """System-prompt text; ``categories`` (not None) replaces the listed categories."""
        if categories is None:
            return super().format_instructions()
        shown = self.with_tools([dataclasses.replace(self.primary, categories=list(categories))])
        return _tp.ToolProtocol.format_instructions(shown)

    def tool_schema(self) -> dict:
        return self.primary.schema()


class _FormatNames(Mapping):
    """The registered wire format names (read-only, live): ``sorted(PROTOCOLS)``, ``name in PROTOCOLS``."""

    def __getitem__(self, name: str) -> Any:
        return get_registry("wire_format").get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(get_registry("wire_format").names())

    def __len__(self) -> int:
        return len(get_registry("wire_format").names())


PROTOCOLS: Mapping[str, Any] = _FormatNames()


def make_protocol(name: str = "hermes", **opts: Any) -> ToolProtocol:
    """``hermes`` | ``plain_tags``; opts: max_tool_calls, categories, answer_marker, inline, require_category..."""
    if name not in PROTOCOLS:
        raise ValueError(f"make_protocol: name={name!r} is not one of {sorted(PROTOCOLS)}")
    return ToolProtocol(name, **opts)


def format_instructions(protocol: Any, categories: Optional[Sequence[str]] = None) -> str:
    """System-prompt text describing the tool; ``protocol`` is a ToolProtocol or its name."""
    proto = make_protocol(protocol) if isinstance(protocol, str) else protocol
    return proto.format_instructions(categories)


class ToolSession(_tp.ToolSession):
    """``ToolSession(protocol, retriever)``: the old per-episode session with the retriever given."""

    def __init__(self, protocol: ToolProtocol, retriever: Any, policy: Optional[Mapping[str, str]] = None):
        super().__init__(protocol, policy)
        self.retriever = retriever

    def _run(self, call: ToolCall) -> ToolResult:
        return self.protocol.run(call, self.retriever, call_index=self.n_calls, policy=self.policy)  # type: ignore[call-arg]
