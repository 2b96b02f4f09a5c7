"""``retrieve_safety_rules``: the ASCL rule-retrieval tool, over a retriever (``ascl_ray.safety.retrieval``). Pure.

Arguments: ``query`` (free text, at most ``max_query_chars``) and ``category`` (a category of the rule
store, matched case/space-insensitively and canonicalised); at least one of them; with
``require_category`` (set it with the ``by_category`` retriever) the category is required. The
response is the retriever's text for (query, category) under the episode's operator policy.

Registered as tool ``retrieve_safety_rules``; its factory builds the retriever named by the method's
``retriever`` / ``retriever_opts`` over the method's rule store (no store: a prompt-only instance
without categories, which cannot execute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ascl_ray.safety.retrieval import list_categories, make_retriever, resolve_category
from ascl_ray.tools.base import EpisodeContext, Tool, ToolEnv, ToolError, check_arguments, check_value, register_tool

__all__ = ["SafetyRulesTool", "TOOL_NAME", "MALFORMED_CALL_TEXT", "LIMIT_REACHED_TEXT", "TOOL_FAILURE_TEXT",
           "ALLOWED_ARGS"]

TOOL_NAME = "retrieve_safety_rules"
MALFORMED_CALL_TEXT = "Error: invalid retrieve_safety_rules call: {error}. Continue without the rules."
LIMIT_REACHED_TEXT = "Tool call limit reached: no more rule lookups. Continue and give your answer."
TOOL_FAILURE_TEXT = "Error: rule retrieval failed. Continue without the rules."
ALLOWED_ARGS = ("query", "category")
NOTHING_TO_LOOK_UP = "missing argument 'query' (or 'category'): nothing to look up"


@dataclass
class SafetyRulesTool(Tool):
    """``retriever``: has ``retrieve(query, category, policy=None) -> str`` (None: cannot execute);
    ``categories``: the valid category names (default: the retriever's; None: any category passes
    through unresolved)."""

    retriever: Any = None
    categories: Optional[Sequence[str]] = None
    require_category: bool = False
    max_query_chars: int = 1000
    name: str = TOOL_NAME

    description = "Look up the safety rules relevant to a request."
    purpose = "look up safety rules before answering"
    text_hint = "your question, or a category"
    returns = "the rules are"
    malformed_text = MALFORMED_CALL_TEXT
    failure_text = TOOL_FAILURE_TEXT
    limit_text = LIMIT_REACHED_TEXT

    def __post_init__(self) -> None:
        if self.categories is None and self.retriever is not None:
            self.categories = getattr(self.retriever, "categories", None)
        self.categories = list(self.categories) if self.categories is not None else None

    @property
    def parameters(self) -> dict:
        cat: dict = {"type": ["string", "null"], "description": "optional safety category"}
        if self.categories:
            cat["enum"] = list(self.categories)
        return {"type": "object",
                "properties": {"query": {"type": "string", "description": "what to look up",
                                         "maxLength": self.max_query_chars},
                               "category": cat},
                "required": ["category"] if self.require_category else [],
                "additionalProperties": False}

    # ---- arguments ------------------------------------------------------------------------
    def check(self, arguments: Any) -> dict:
        """Generic keys/types/required, then: a category is required (``require_category``) and not
        blank; query or category non-blank; the query's length; the category resolved."""
        schema = self.parameters
        args = check_arguments(schema, arguments, values=False)
        q, cat = args.get("query"), args.get("category")
        has_cat = bool(cat and cat.strip())
        if self.require_category and not has_cat:
            raise ToolError("missing argument 'category'")
        if not (q and q.strip()) and not has_cat:
            raise ToolError(NOTHING_TO_LOOK_UP)
        if q is not None:
            check_value("query", schema["properties"]["query"], q)
        out: dict = {} if q is None else {"query": q}
        if has_cat:
            out["category"] = resolve_category(cat, self.categories) if self.categories is not None else cat
        return out

    def example_arguments(self) -> dict:
        return {"query": "...", "category": "..."}

    def examples(self) -> list[dict]:
        cats = self.categories or ["general"]
        out = [{"query": "how do I make a pipe bomb", "category": cats[0]}, {"category": cats[-1]}]
        return out if self.require_category else [{"query": "pipe bomb"}] + out

    def from_text(self, text: str) -> dict:
        """``plain_tags`` body: a category name, ``category: question``, or a free question."""
        s = text.strip()
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
                return {"category": cat} if rest is None else {"query": rest, "category": cat}
        return {"query": s}

    def to_text(self, arguments: Any) -> str:
        q, cat = arguments.get("query"), arguments.get("category")
        return f"{cat}: {q}" if cat and q else (cat or q or "")

    # ---- executing ------------------------------------------------------------------------
    def execute(self, arguments: dict, episode: EpisodeContext) -> str:
        if self.retriever is None:
            raise RuntimeError(f"{self.name}: no retriever bound (built without a rule store)")
        policy = episode.policy
        return self.retriever.retrieve(arguments.get("query") or "", arguments.get("category"),
                                       **({"policy": policy} if policy else {}))

    # ---- system prompt ----------------------------------------------------------------------
    def usage_note(self) -> str:
        return (f"\"category\" is {'required' if self.require_category else 'optional'}. "
                "The rules are returned to you; then continue and answer. ")

    def context_note(self) -> str:
        return f"Categories: {list_categories(self.categories)}. " if self.categories else ""

    def limits_note(self, max_calls: int, answer_marker: Optional[str] = None) -> str:
        text = f"At most {max_calls} lookup{'s' if max_calls != 1 else ''}."
        return text + (f" Never look up after {answer_marker}." if answer_marker else "")


@register_tool(TOOL_NAME)
def safety_rules_tool(env: ToolEnv) -> SafetyRulesTool:
    """From the method context: the retriever ``env.retriever`` (``env.retriever_opts``) over ``env.store``."""
    if env.store is None:
        return SafetyRulesTool()
    retriever = make_retriever(env.retriever, env.store, **dict(env.retriever_opts or {}))
    return SafetyRulesTool(retriever=retriever)
