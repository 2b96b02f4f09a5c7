"""The ``retrieve_safety_rules`` tool protocol (ASCL), configurable by name. No Ray/vLLM/torch.

- ``hermes`` (default, Qwen/Hermes style): the model writes
  ``<tool_call>{"name": "retrieve_safety_rules", "arguments": {"query": "...", "category": "..."}}</tool_call>``;
  stop string ``</tool_call>``; the answer is a ``tool`` turn rendered by the model's chat template.
- ``plain_tags``: ``<rules_query>free text | category | category: text</rules_query>``; stop string
  ``</rules_query>``; answered inline as ``<rules>\\n...\\n</rules>\\n`` (``inline=True``, default) or as a
  chat-template tool turn (``inline=False``).

Rollout use (one ``ToolSession`` per episode)::

    proto = make_protocol("hermes", categories=retriever.categories, max_tool_calls=1)
    sampling stop=proto.stop_strings, include_stop_str_in_output=True   # parse needs the closing tag
    res = session.step(segment_text)        # None: final answer; else a ToolResult
    text_to_append = proto.render_tool_turn(tokenizer, res.content)   # loss_mask 0

``parse`` never raises. Malformed calls and over-limit calls get fixed texts (module constants).
[ours] A call counts toward ``max_tool_calls`` even when malformed; ``consulted`` = any call attempted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ascl_ray.safety.retrieval import ToolError, list_categories, resolve_category

log = logging.getLogger(__name__)

TOOL_NAME = "retrieve_safety_rules"
MALFORMED_CALL_TEXT = "Error: invalid retrieve_safety_rules call: {error}. Continue without the rules."
LIMIT_REACHED_TEXT = "Tool call limit reached: no more rule lookups. Continue and give your answer."
TOOL_FAILURE_TEXT = "Error: rule retrieval failed. Continue without the rules."
TRUNCATION_MARK = " [...]"
SENTINEL = "ASCL_SENTINEL_7f3a9c"
HERMES_FALLBACK = "<tool_response>\n{content}\n</tool_response>"
RULES_WRAP = "<rules>\n{content}\n</rules>"
ALLOWED_ARGS = ("query", "category")

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


def _jtype(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _clip(text: str, n: int = 2000) -> str:
    return text if len(text) <= n else text[:n] + TRUNCATION_MARK


@dataclass
class ToolCall:
    """A parsed call. ``error`` set = malformed (the arguments may then be partial or empty)."""

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


class ToolProtocol:
    name = "base"
    open_tag = ""
    close_tag = ""
    fallback_wrap = "{content}"

    def __init__(self, *, tool_name: str = TOOL_NAME, max_tool_calls: int = 1,
                 categories: Optional[Sequence[str]] = None, answer_marker: Optional[str] = None,
                 max_call_chars: int = 4096, max_query_chars: int = 1000,
                 max_response_chars: Optional[int] = None, inline: bool = False, require_category: bool = False):
        if max_tool_calls < 0:
            raise ValueError(f"{self.name}: max_tool_calls={max_tool_calls} must be >= 0")
        self.tool_name = tool_name
        self.max_tool_calls = max_tool_calls
        self.categories = list(categories) if categories is not None else None
        self.answer_marker = answer_marker or None
        self.max_call_chars, self.max_query_chars = max_call_chars, max_query_chars
        self.max_response_chars = max_response_chars
        self.inline = inline
        self.require_category = require_category  # set it with the by_category retriever

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
        args, err = self._check_args(args)
        if err is not None:
            return bad(err, name, args)
        return ToolCall(name, args, raw, None, span)

    def _parse_body(self, body: str) -> tuple[Optional[str], Any, Optional[str]]:  # pragma: no cover
        raise NotImplementedError

    def _check_args(self, args: dict) -> tuple[dict, Optional[str]]:
        extra = [k for k in args if k not in ALLOWED_ARGS]
        if extra:
            return {}, (f"unexpected argument(s) {', '.join(repr(k) for k in extra)}; "
                        f"allowed: {', '.join(repr(a) for a in ALLOWED_ARGS)}")
        q, cat = args.get("query"), args.get("category")
        if q is not None and not isinstance(q, str):
            return {}, f"argument 'query' must be a string, got {_jtype(q)}"
        if cat is not None and not isinstance(cat, str):
            return {}, f"argument 'category' must be a string or null, got {_jtype(cat)}"
        has_cat = bool(cat and cat.strip())
        if self.require_category and not has_cat:
            return {}, "missing argument 'category'"
        if not (q and q.strip()) and not has_cat:
            return {}, "missing argument 'query' (or 'category'): nothing to look up"
        if q is not None and len(q) > self.max_query_chars:
            return {}, f"argument 'query' too long ({len(q)} chars > {self.max_query_chars})"
        out: dict = {} if q is None else {"query": q}
        if has_cat:
            if self.categories is not None:
                try:
                    cat = resolve_category(cat, self.categories)
                except ToolError as e:
                    return out, str(e)
            out["category"] = cat
        return out, None

    def format_call(self, arguments: dict) -> str:  # pragma: no cover
        raise NotImplementedError

    # ---- executing ----------------------------------------------------------------------------
    def run(self, call: Optional[ToolCall], retriever: Any, call_index: int = 0,
            policy: Optional[dict] = None) -> ToolResult:
        """Execute with status. ``call_index``: calls already made in this episode (0-based); ``policy``:
        the episode's operator policy ({category: comply|refuse}), passed to the retriever when set."""
        if call is None:
            call = ToolCall(None, {}, "", error="no tool call")
        if call_index >= self.max_tool_calls:
            return ToolResult(call, LIMIT_REACHED_TEXT, "limit")
        if call.error is not None:
            return ToolResult(call, self._fit(MALFORMED_CALL_TEXT.format(error=call.error)), "malformed")
        try:
            out = retriever.retrieve(call.arguments.get("query") or "", call.arguments.get("category"),
                                     **({"policy": policy} if policy else {}))
        except ToolError as e:
            return ToolResult(call, self._fit(MALFORMED_CALL_TEXT.format(error=e)), "malformed")
        except Exception:  # noqa: BLE001 - a broken retriever must not crash a rollout
            log.exception("retriever %r failed on %r", retriever, call.arguments)
            return ToolResult(call, TOOL_FAILURE_TEXT, "failed")
        if not isinstance(out, str):
            return ToolResult(call, TOOL_FAILURE_TEXT, "failed")
        return ToolResult(call, self._fit(out), "ok")

    def execute(self, call: Optional[ToolCall], retriever: Any, call_index: int = 0) -> str:
        """The tool response content for ``call`` (error / limit texts included)."""
        return self.run(call, retriever, call_index).content

    def _fit(self, text: str) -> str:
        n = self.max_response_chars
        return text if n is None or len(text) <= n else text[: max(0, n - len(TRUNCATION_MARK))] + TRUNCATION_MARK

    # ---- rendering ----------------------------------------------------------------------------
    def render_tool_turn(self, tokenizer: Any, content: str) -> str:
        """Exact text to append after the model's closing tag so generation resumes as the assistant."""
        if self.inline:
            return RULES_WRAP.format(content=content) + "\n"
        return render_chat_tool_turn(tokenizer, content, self.fallback_wrap)

    def tool_schema(self) -> dict:
        """OpenAI-style function schema (for ``apply_chat_template(tools=[...])`` if wanted)."""
        cat: dict = {"type": "string", "description": "optional safety category"}
        if self.categories:
            cat["enum"] = list(self.categories)
        return {"type": "function", "function": {
            "name": self.tool_name, "description": "Look up the safety rules relevant to a request.",
            "parameters": {"type": "object", "properties": {
                "query": {"type": "string", "description": "what to look up"}, "category": cat},
                "required": ["query"]}}}

    def _limits_text(self, categories: Optional[Sequence[str]]) -> str:
        cats = list(categories) if categories is not None else self.categories
        text = f"Categories: {list_categories(cats)}. " if cats else ""
        n = self.max_tool_calls
        text += f"At most {n} lookup{'s' if n != 1 else ''}."
        if self.answer_marker:
            text += f" Never look up after {self.answer_marker}."
        return text

    def format_instructions(self, categories: Optional[Sequence[str]] = None) -> str:  # pragma: no cover
        raise NotImplementedError


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


class HermesProtocol(ToolProtocol):
    name = "hermes"
    open_tag, close_tag = "<tool_call>", "</tool_call>"
    fallback_wrap = HERMES_FALLBACK

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
            return None, None, f"tool call must be a JSON object, got {_jtype(obj)}"
        if "name" not in obj:
            return None, None, "missing field 'name'"
        name = obj["name"]
        if not isinstance(name, str):
            return None, None, f"field 'name' must be a string, got {_jtype(name)}"
        if name != self.tool_name:
            return name, None, f"unknown tool name {_clip(name, 80)!r}; the only tool is {self.tool_name!r}"
        if "arguments" not in obj:
            return name, None, "missing field 'arguments'"
        args = obj["arguments"]
        if isinstance(args, str):  # OpenAI style: arguments as a JSON-encoded string
            try:
                args = json.loads(args)
            except (ValueError, RecursionError):
                return name, None, "field 'arguments' is a string that is not a JSON object"
        if not isinstance(args, dict):
            return name, None, f"field 'arguments' must be a JSON object, got {_jtype(args)}"
        return name, args, None

    def format_call(self, arguments: dict) -> str:
        s = json.dumps({"name": self.tool_name, "arguments": arguments}, ensure_ascii=False)
        for tag in (self.open_tag, self.close_tag):  # keep tags out of the JSON text (escape '<')
            s = s.replace(tag, "\\u003c" + tag[1:])
        return f"{self.open_tag}{s}{self.close_tag}"

    def format_instructions(self, categories: Optional[Sequence[str]] = None) -> str:
        example = json.dumps({"name": self.tool_name, "arguments": {"query": "...", "category": "..."}})
        return (f"You may look up safety rules before answering with the tool {self.tool_name}. "
                f"To call it, write:\n{self.open_tag}{example}{self.close_tag}\n"
                f"\"category\" is {'required' if self.require_category else 'optional'}. "
                "The rules are returned to you; then continue and answer. "
                + self._limits_text(categories))


class PlainTagsProtocol(ToolProtocol):
    name = "plain_tags"
    open_tag, close_tag = "<rules_query>", "</rules_query>"
    fallback_wrap = RULES_WRAP

    def __init__(self, *, inline: bool = True, **opts: Any):
        super().__init__(inline=inline, **opts)

    def _parse_body(self, body: str) -> tuple[Optional[str], Any, Optional[str]]:
        s = body.strip()
        if not s:
            return self.tool_name, None, f"empty query inside {self.open_tag}{self.close_tag}"
        if self.categories:  # "category" or "category: query" when it names a known category
            cands: list[tuple[str, Optional[str]]] = [(s, None)]
            if ":" in s:
                head, rest = s.split(":", 1)
                cands.append((head.strip(), rest.strip()))
            for cand, rest in cands:
                try:
                    cat = resolve_category(cand, self.categories)
                except ToolError:
                    continue
                return self.tool_name, ({"category": cat} if rest is None else {"query": rest, "category": cat}), None
        return self.tool_name, {"query": s}, None

    def format_call(self, arguments: dict) -> str:
        q, cat = arguments.get("query"), arguments.get("category")
        body = f"{cat}: {q}" if cat and q else (cat or q or "")
        if self.open_tag in body or self.close_tag in body:
            raise ValueError(f"plain_tags cannot encode a query containing {self.open_tag} or {self.close_tag}")
        return f"{self.open_tag}{body}{self.close_tag}"

    def format_instructions(self, categories: Optional[Sequence[str]] = None) -> str:
        return (f"You may look up safety rules before answering: write {self.open_tag}your question, "
                f"or a category{self.close_tag} and the rules are returned in <rules></rules>; then "
                f"continue and answer. " + self._limits_text(categories))


PROTOCOLS = {p.name: p for p in (HermesProtocol, PlainTagsProtocol)}


def make_protocol(name: str = "hermes", **opts: Any) -> ToolProtocol:
    """``hermes`` | ``plain_tags``; opts: max_tool_calls, categories, answer_marker, inline, require_category..."""
    if name not in PROTOCOLS:
        raise ValueError(f"make_protocol: name={name!r} is not one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name](**opts)


def format_instructions(protocol: Any, categories: Optional[Sequence[str]] = None) -> str:
    """System-prompt text describing the tool; ``protocol`` is a ToolProtocol or its name."""
    proto = make_protocol(protocol) if isinstance(protocol, str) else protocol
    return proto.format_instructions(categories)


@dataclass
class ToolSession:
    """Per-episode bookkeeping: call count (for the limit) and the per-rollout record fields."""

    protocol: ToolProtocol
    retriever: Any
    n_calls: int = 0
    n_malformed: int = 0
    categories: list = field(default_factory=list)
    results: list = field(default_factory=list)

    def step(self, segment_text: str) -> Optional[ToolResult]:
        call = self.protocol.parse(segment_text)
        if call is None:
            return None
        res = self.protocol.run(call, self.retriever, call_index=self.n_calls)
        self.n_calls += 1
        self.n_malformed += res.status == "malformed"
        if res.status == "ok" and call.arguments.get("category"):
            self.categories.append(call.arguments["category"])
        self.results.append(res)
        return res

    def record(self) -> dict:
        return {"consulted": self.n_calls > 0, "n_calls": self.n_calls,
                "categories": list(self.categories), "malformed_call": self.n_malformed > 0}
