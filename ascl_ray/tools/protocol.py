"""A tool protocol = a wire format over some tools + the session rules; and the per-episode session. Pure.

Rollout use (what ``MethodContext`` does; one ``ToolSession`` per episode when bookkeeping is wanted)::

    proto = make_tool_protocol("hermes", ["retrieve_safety_rules"], env=ToolEnv(store=store), max_tool_calls=1)
    sampling stop=proto.stop_strings, include_stop_str_in_output=True   # parse needs the closing tag
    res = proto.run(proto.parse(segment_text), call_index=n_prev_calls, policy=episode_policy)
    text_to_append = proto.render_tool_turn(tokenizer, res.content)       # loss_mask 0

``run`` statuses: ``ok`` (the tool's text, clipped to ``max_response_chars``), ``malformed`` (the
called tool's ``malformed_text``; the primary tool's when no known tool was named), ``limit`` (the
primary tool's ``limit_text``; the limit wins over malformed), ``failed`` (the tool raised something
other than ToolError, or returned a non-string: its ``failure_text``). [ours] A call counts toward
``max_tool_calls`` even when malformed; ``consulted`` = any call attempted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ascl_ray.registry import get_registry
from ascl_ray.tools.base import EpisodeContext, Tool, ToolCall, ToolEnv, ToolError, ToolResult, make_tools
from ascl_ray.tools.wire import TRUNCATION_MARK, WireFormat

log = logging.getLogger(__name__)

__all__ = ["ToolProtocol", "ToolSession", "make_tool_protocol"]


class ToolProtocol:
    """A wire format (which carries the tools) + the call limit + response clipping. Stateless: the
    episode's call count comes in as ``call_index``."""

    def __init__(self, fmt: WireFormat, *, max_tool_calls: int = 1, max_response_chars: Optional[int] = None):
        if max_tool_calls < 0:
            raise ValueError(f"{fmt.name}: max_tool_calls={max_tool_calls} must be >= 0")
        self.format = fmt
        self.max_tool_calls = max_tool_calls
        self.max_response_chars = max_response_chars

    # ---- what the format says -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.format.name

    @property
    def tools(self) -> list[Tool]:
        return self.format.tools

    @property
    def primary(self) -> Tool:
        return self.format.primary

    def tool(self, name: Optional[str]) -> Optional[Tool]:
        return self.format.tool(name)

    @property
    def open_tag(self) -> str:
        return self.format.open_tag

    @property
    def close_tag(self) -> str:
        return self.format.close_tag

    @property
    def inline(self) -> bool:
        return self.format.inline

    @property
    def answer_marker(self) -> Optional[str]:
        return self.format.answer_marker

    @property
    def stop_strings(self) -> list[str]:
        return self.format.stop_strings

    def parse(self, segment_text: str) -> Optional[ToolCall]:
        return self.format.parse(segment_text)

    def format_call(self, arguments: dict, tool: Optional[str] = None) -> str:
        """A call of ``tool`` (default: the primary tool) as the model writes it (SFT demonstrations)."""
        return self.format.format_call(arguments, tool)

    def render_tool_turn(self, tokenizer: Any, content: str) -> str:
        return self.format.render_tool_turn(tokenizer, content)

    def with_tools(self, tools: Sequence[Tool]) -> "ToolProtocol":
        """The same protocol over other tool instances (e.g. bound to another retriever)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.format = self.format.with_tools(tools)
        return out

    def format_instructions(self) -> str:
        """System-prompt text: every tool's paragraph (one per line), then the primary tool's limits note."""
        paras = self.format.instructions()
        return "\n".join(p.rstrip() for p in paras) + " " + self.primary.limits_note(self.max_tool_calls,
                                                                                     self.answer_marker)

    def tool_schemas(self) -> list[dict]:
        return [t.schema() for t in self.tools]

    # ---- executing ----------------------------------------------------------------------------
    def run(self, call: Optional[ToolCall], call_index: int = 0, policy: Optional[Mapping[str, str]] = None
            ) -> ToolResult:
        """Execute with status. ``call_index``: calls already made in this episode (0-based); ``policy``:
        the episode's operator policy ({category: comply|refuse}), handed to the tool."""
        if call is None:
            call = ToolCall(None, {}, "", error="no tool call")
        if call_index >= self.max_tool_calls:
            return ToolResult(call, self.primary.limit_text, "limit")
        tool = self.tool(call.name)
        if call.error is not None or tool is None:
            speaker = tool or self.primary
            error = call.error if call.error is not None else f"unknown tool name {call.name!r}"
            return ToolResult(call, self._fit(speaker.malformed(error)), "malformed")
        try:
            out = tool.execute(call.arguments, EpisodeContext(policy=policy, call_index=call_index))
        except ToolError as e:
            return ToolResult(call, self._fit(tool.malformed(str(e))), "malformed")
        except Exception:  # noqa: BLE001 - a broken tool must not crash a rollout
            log.exception("tool %r failed on %r", tool, call.arguments)
            return ToolResult(call, tool.failure_text.format(name=tool.name), "failed")
        if not isinstance(out, str):
            return ToolResult(call, tool.failure_text.format(name=tool.name), "failed")
        return ToolResult(call, self._fit(out), "ok")

    def _fit(self, text: str) -> str:
        n = self.max_response_chars
        return text if n is None or len(text) <= n else text[: max(0, n - len(TRUNCATION_MARK))] + TRUNCATION_MARK

    def __repr__(self) -> str:
        return f"ToolProtocol({self.name!r}, tools={[t.name for t in self.tools]}, max_tool_calls={self.max_tool_calls})"


def make_tool_protocol(fmt: str = "hermes", tools: Sequence[Any] = ("retrieve_safety_rules",), *,
                       env: Optional[ToolEnv] = None, max_tool_calls: int = 1,
                       max_response_chars: Optional[int] = None, **format_opts: Any) -> ToolProtocol:
    """The protocol of wire format ``fmt`` (a registered name) over ``tools`` (registered names or Tool
    instances; the first is the primary tool), built from ``env``. ``format_opts``: answer_marker,
    max_call_chars, inline."""
    built = make_tools(tools, env)
    return ToolProtocol(get_registry("wire_format").create(fmt, built, **format_opts),
                        max_tool_calls=max_tool_calls, max_response_chars=max_response_chars)


@dataclass
class ToolSession:
    """Per-episode bookkeeping over any set of tools: the call count (for the limit) and the record
    fields ``consulted`` (any call attempted), ``n_calls``, ``categories`` (of ok calls that named one)
    and ``malformed_call``."""

    protocol: ToolProtocol
    policy: Optional[Mapping[str, str]] = None
    n_calls: int = 0
    n_malformed: int = 0
    categories: list = field(default_factory=list)
    results: list = field(default_factory=list)

    def _run(self, call: ToolCall) -> ToolResult:
        return self.protocol.run(call, call_index=self.n_calls, policy=self.policy)

    def step(self, segment_text: str) -> Optional[ToolResult]:
        """None when the segment holds no call (a final answer); else the call's result."""
        call = self.protocol.parse(segment_text)
        if call is None:
            return None
        res = self._run(call)
        self.n_calls += 1
        self.n_malformed += res.status == "malformed"
        if res.status == "ok" and call.arguments.get("category"):
            self.categories.append(call.arguments["category"])
        self.results.append(res)
        return res

    def record(self) -> dict:
        return {"consulted": self.n_calls > 0, "n_calls": self.n_calls,
                "categories": list(self.categories), "malformed_call": self.n_malformed > 0}
