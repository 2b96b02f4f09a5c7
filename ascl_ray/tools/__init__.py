"""Tools the policy may call mid-generation, as plug-ins. Pure: no Ray / vLLM / torch / DeepSpeed.

Three pieces, each on the one registry (``ascl_ray.registry``):

- a **tool** (``base.Tool``; plug-in point ``tool``, registry ``TOOLS`` of factories
  ``factory(env: ToolEnv) -> Tool``): name, description, JSON schema of its arguments, ``check``
  and ``execute(arguments, episode) -> str``. Built-in: ``retrieve_safety_rules`` (``safety_rules.py``);
- a **wire format** (``wire.WireFormat``; plug-in point ``wire_format``, registry ``WIRE_FORMATS``):
  how calls look in the text and how answers are spliced back. Built-ins: ``hermes``, ``plain_tags``
  (``formats.py``);
- the **protocol** (``protocol.ToolProtocol``: a format over the offered tools + the call limit) and
  the per-episode **session** (``protocol.ToolSession``).

Adding a tool: subclass ``Tool`` (name, description, purpose, ``parameters``, ``execute``), register a
factory with ``@register_tool("my_tool")`` in a module listed in ``algorithm.plugins`` (or
``import_plugins``), and offer it from a method (``ascl_ray.rollout.method``: a ``Method`` whose
``tools`` names it). Layering: registry < safety < tools < rollout.
"""

from ascl_ray.safety.retrieval import ToolError
from ascl_ray.tools.base import (TOOLS, EpisodeContext, Tool, ToolCall, ToolEnv, ToolResult, check_arguments,
                                 check_value, json_type, make_tools, register_tool)
from ascl_ray.tools.wire import (CHATML_TOOL_TEMPLATE, HERMES_FALLBACK, RULES_WRAP, SENTINEL, TRUNCATION_MARK,
                                 WIRE_FORMATS, WireFormat, register_wire_format, render_chat_tool_turn)
from ascl_ray.tools.formats import HermesFormat, PlainTagsFormat
from ascl_ray.tools.protocol import ToolProtocol, ToolSession, make_tool_protocol
from ascl_ray.tools.safety_rules import (LIMIT_REACHED_TEXT, MALFORMED_CALL_TEXT, TOOL_FAILURE_TEXT, TOOL_NAME,
                                         SafetyRulesTool)

__all__ = [
    "ToolError", "TOOLS", "EpisodeContext", "Tool", "ToolCall", "ToolEnv", "ToolResult", "check_arguments",
    "check_value", "json_type", "make_tools", "register_tool", "CHATML_TOOL_TEMPLATE", "HERMES_FALLBACK",
    "RULES_WRAP", "SENTINEL", "TRUNCATION_MARK", "WIRE_FORMATS", "WireFormat", "register_wire_format",
    "render_chat_tool_turn", "HermesFormat", "PlainTagsFormat", "ToolProtocol", "ToolSession",
    "make_tool_protocol", "LIMIT_REACHED_TEXT", "MALFORMED_CALL_TEXT", "TOOL_FAILURE_TEXT", "TOOL_NAME",
    "SafetyRulesTool",
]
