"""The tool contract: what the policy may call mid-generation. Pure (no Ray / vLLM / torch).

A tool is a :class:`Tool` instance:

- ``name`` (what the model writes), ``description`` (one line), ``parameters`` (a JSON schema of the
  arguments: ``{"type": "object", "properties": {...}, "required": [...], "additionalProperties": false}``);
- ``check(arguments) -> dict``: the canonical arguments, or ``ToolError`` whose message goes to the model.
  The default is :func:`check_arguments` on ``parameters`` (unexpected keys, types, required, enum,
  maxLength); a tool adds its own checks by overriding it;
- ``execute(arguments, episode) -> str``: the tool response for checked arguments; ``episode`` is the
  :class:`EpisodeContext` (the episode's operator policy, the call's index). Bad arguments raise
  ``ToolError`` (a masked error turn); any other exception is a tool failure (never crashes a rollout);
- system-prompt pieces the wire formats compose: ``purpose``, ``usage_note()``, ``context_note()``,
  ``example_arguments()``, ``text_hint``, ``returns`` and ``limits_note(n, answer_marker)``;
- the texts the environment answers with: ``malformed_text`` (``{name}``, ``{error}``), ``failure_text``,
  ``limit_text`` (the primary tool's speak for the session);
- ``from_text`` / ``to_text``: arguments <-> free text, for formats that carry one free-text query
  (``plain_tags``); default: the first string property.

Tools are plug-ins: ``TOOLS`` (plug-in point ``tool``) maps a name to a *factory*
``factory(env: ToolEnv) -> Tool`` that builds the instance from the method's context (rule store,
retriever options). ``@register_tool("name")`` registers one; ``make_tools(names, env)`` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from ascl_ray.registry import Registry, get_registry
from ascl_ray.safety.retrieval import ToolError

__all__ = ["Tool", "ToolError", "ToolCall", "ToolResult", "ToolEnv", "EpisodeContext", "TOOLS", "register_tool",
           "make_tools", "check_arguments", "check_value", "json_type", "clip"]

TOOLS = Registry("tool", point="tool")
JSON_TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
_ARTICLE = {"string": "a string", "number": "a number", "integer": "an integer", "boolean": "a boolean",
            "array": "an array", "object": "an object", "null": "null"}


def register_tool(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator: register a tool factory ``(env: ToolEnv) -> Tool`` under ``name``."""
    return TOOLS.register(name, overwrite=overwrite)


def json_type(v: Any) -> str:
    """The JSON type word of a Python value (``int`` -> "number", as the error texts say)."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def clip(text: str, n: int = 2000, mark: str = " [...]") -> str:
    return text if len(text) <= n else text[:n] + mark


def _is_type(v: Any, t: str) -> bool:
    if t == "string":
        return isinstance(v, str)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "array":
        return isinstance(v, list)
    if t == "object":
        return isinstance(v, dict)
    return t == "null" and v is None


def _types(prop: Mapping[str, Any]) -> list[str]:
    t = prop.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def check_value(key: str, prop: Mapping[str, Any], value: Any) -> None:
    """Value constraints of one argument: ``enum`` then ``maxLength`` (strings). ToolError if broken."""
    if "enum" in prop and value not in prop["enum"]:
        allowed = ", ".join(repr(e) for e in prop["enum"])
        raise ToolError(f"argument {key!r} must be one of {allowed}, got {clip(repr(value), 80)}")
    n = prop.get("maxLength")
    if n is not None and isinstance(value, str) and len(value) > n:
        raise ToolError(f"argument {key!r} too long ({len(value)} chars > {n})")


def check_arguments(schema: Mapping[str, Any], arguments: Any, *, values: bool = True) -> dict:
    """Generic argument check against an object schema; returns the arguments without null values.

    In order: an object; no key outside ``properties`` ("unexpected argument(s) 'x'; allowed: 'a', 'b'");
    each present property's ``type`` in ``properties`` order ("argument 'a' must be a string, got number";
    a list type reads "a string or null"); ``required`` ("missing argument 'a'"); with ``values``, each
    property's ``enum`` and ``maxLength`` (:func:`check_value`). A null for an optional argument means
    absent. Raises ToolError with those messages.
    """
    if not isinstance(arguments, dict):
        raise ToolError(f"arguments must be a JSON object, got {json_type(arguments)}")
    props: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    extra = [k for k in arguments if k not in props]
    if extra:
        raise ToolError(f"unexpected argument(s) {', '.join(repr(k) for k in extra)}; "
                        f"allowed: {', '.join(repr(a) for a in props)}")
    for key, prop in props.items():
        if key not in arguments:
            continue
        v, types = arguments[key], _types(prop)
        if v is None and "null" not in types:
            continue  # null: absent (then "missing argument" if required)
        if types and not any(_is_type(v, t) for t in types):
            want = " or ".join(_ARTICLE.get(t, t) for t in types)
            raise ToolError(f"argument {key!r} must be {want}, got {json_type(v)}")
    out = {k: v for k, v in arguments.items() if v is not None}
    for key in schema.get("required", ()):
        if key not in out:
            raise ToolError(f"missing argument {key!r}")
    if values:
        for key, prop in props.items():
            if key in out:
                check_value(key, prop, out[key])
    return out


@dataclass
class ToolCall:
    """A parsed call. ``error`` set = malformed (``arguments`` is then empty or partial)."""

    name: Optional[str]
    arguments: dict
    raw: str
    error: Optional[str] = None
    span: Optional[tuple[int, int]] = None  # [start, end) of the call in the segment text

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ToolResult:
    call: ToolCall
    content: str
    status: str  # ok | malformed | limit | failed


@dataclass(frozen=True)
class ToolEnv:
    """What a tool factory may read: the method's context. ``store`` is the RuleStore (None when only a
    system prompt is wanted without one); ``retriever`` / ``retriever_opts`` are the method's retriever
    choice (MethodCfg); ``options`` holds anything else a plug-in tool reads (keyed by tool name, say)."""

    store: Any = None
    retriever: str = "by_category"
    retriever_opts: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeContext:
    """Per-episode facts a tool may use: ``policy`` is the episode's operator policy
    ({category: comply|refuse}; None or empty: the spec's defaults); ``call_index`` counts the calls
    made before this one in the episode."""

    policy: Optional[Mapping[str, str]] = None
    call_index: int = 0


class Tool:
    """Base class of the tool contract (module docstring). Subclasses set ``name``, ``description``,
    ``purpose`` and ``parameters`` and implement ``execute``."""

    name: str = ""
    description: str = ""
    purpose: str = ""             # "You may {purpose} with the tool {name}." in the system prompt
    text_hint: str = "your query"  # free-text formats: "write <tag>{text_hint}</tag>"
    returns: str = "the result is"  # free-text formats: "... and {returns} returned in <tag></tag>"
    malformed_text: str = "Error: invalid {name} call: {error}."
    failure_text: str = "Error: the {name} tool failed."
    limit_text: str = "Tool call limit reached: no more tool calls. Continue and give your answer."

    @property
    def parameters(self) -> dict:  # pragma: no cover - every tool defines it
        raise NotImplementedError

    # ---- arguments ------------------------------------------------------------------------
    def check(self, arguments: Any) -> dict:
        """Canonical arguments or ToolError (default: the generic schema check)."""
        return check_arguments(self.parameters, arguments)

    def example_arguments(self) -> dict:
        """What the format instructions show: "..." for each property (required ones first)."""
        props = self.parameters.get("properties", {})
        req = [k for k in self.parameters.get("required", ()) if k in props]
        return {k: "..." for k in req + [k for k in props if k not in req]}

    def examples(self) -> list[dict]:
        """Valid argument dicts (docs, contract tests): one value per property from its schema."""
        props = self.parameters.get("properties", {})
        sample = {"string": "x", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}
        out = {}
        for k, p in props.items():
            types = [t for t in _types(p) if t != "null"]
            out[k] = p["enum"][0] if p.get("enum") else sample.get(types[0] if types else "string", "x")
        return [out]

    def _text_key(self) -> str:
        for k, p in self.parameters.get("properties", {}).items():
            if "string" in _types(p):
                return k
        raise ToolError(f"tool {self.name!r} takes no free-text argument")

    def from_text(self, text: str) -> dict:
        """Arguments from a free-text query (formats like ``plain_tags``)."""
        return {self._text_key(): text}

    def to_text(self, arguments: Mapping[str, Any]) -> str:
        return str(arguments.get(self._text_key()) or "")

    # ---- executing ------------------------------------------------------------------------
    def execute(self, arguments: dict, episode: EpisodeContext) -> str:  # pragma: no cover
        raise NotImplementedError

    def malformed(self, error: str) -> str:
        return self.malformed_text.format(name=self.name, error=error)

    # ---- system prompt ----------------------------------------------------------------------
    def usage_note(self) -> str:
        """Text after the call example (ends in a space when not empty)."""
        return ""

    def context_note(self) -> str:
        """What the model should know to call it well (e.g. the valid categories); ends in a space."""
        return ""

    def limits_note(self, max_calls: int, answer_marker: Optional[str] = None) -> str:
        """The session's limits, said by the primary tool."""
        text = f"At most {max_calls} tool call{'s' if max_calls != 1 else ''}."
        return text + (f" Never call a tool after {answer_marker}." if answer_marker else "")

    def schema(self) -> dict:
        """OpenAI-style function schema (for ``apply_chat_template(tools=[...])`` if wanted)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def make_tools(names: Sequence[Any], env: Optional[ToolEnv] = None) -> list[Tool]:
    """Tool instances for ``names`` (registered names, 'module:factory' paths, or Tool instances kept
    as they are), built from ``env``. Duplicate tool names are an error."""
    reg = get_registry("tool")
    env = env or ToolEnv()
    tools = [n if isinstance(n, Tool) else reg.create(n, env) for n in names]
    for t in tools:
        if not isinstance(t, Tool):
            raise TypeError(f"tool factory returned {type(t).__name__}, not a Tool")
    seen = [t.name for t in tools]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise ValueError(f"tools {dup} are offered twice")
    return tools
