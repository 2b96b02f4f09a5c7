"""Rule retrievers behind the ``retrieve_safety_rules`` tool, selected by name from config.

``make_retriever(name, store, **opts)`` -> an object with ``categories`` (valid category names)
and ``retrieve(query, category, policy=None) -> str`` (the text that goes into the tool response).
Retrievers are plug-ins (plug-in point ``retriever``): ``@register_retriever("name")`` on a class
(or factory) called as ``cls(store, **opts)``, or a ``"pkg.module:Class"`` path. A
bad argument raises ``ToolError`` (the tool turns it into a masked error response). ``policy``
({category: comply|refuse}) is the deployment's current policy for operator-set categories (drawn per
episode by the training environment); missing categories use the spec's default.

- ``whole_spec``  (opts: compact=True, max_cases_per_category=0): the whole spec; query and
  category are ignored.
- ``by_category`` (opts: max_cases=2, compact=False): codes + cases of one category, taken from
  the ``category`` argument (or a ``query`` that names a category); unknown/missing -> ToolError
  listing the valid ones.
- ``bm25``        (opts: top_k=3, include_category_text=False): top-k rules by BM25 (``bm25s``)
  over rule texts for ``query``; ``category`` optionally restricts to one category. [ours] Light
  plural stemming; with no matching term the category's first rules are returned, or, without a
  category, ``NO_MATCH_TEXT``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Sequence

from ascl_ray.registry import Registry
from ascl_ray.safety.render import render_category, render_codes_and_cases
from ascl_ray.safety.spec import RuleStore

NO_MATCH_TEXT = "No safety rule matched the query. Categories: {categories}."
# [ours] question/filler words on top of bm25s's English stopwords ("how to ..." must not match rules)
EXTRA_STOPWORDS = ("how", "what", "why", "where", "when", "which", "who", "whom", "can", "could", "would",
                   "should", "do", "does", "did", "i", "me", "my", "you", "your", "please", "tell", "give",
                   "want", "need", "get", "is", "are", "about", "some", "any")
_MAX_LISTED = 40


RETRIEVERS = Registry("retriever", point="retriever")


def register_retriever(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator: register a retriever class/factory ``(store, **opts) -> retriever`` under ``name``."""
    return RETRIEVERS.register(name, overwrite=overwrite)


class ToolError(ValueError):
    """A tool call that cannot be answered (bad argument); its message goes to the model. Every tool
    raises it (``ascl_ray.tools`` re-exports it); it lives here because the retrievers raise it too."""


def normalize_category(name: str) -> str:
    return re.sub(r"[\s\-/]+", "_", name.strip().lower())


def list_categories(categories: Sequence[str]) -> str:
    shown = ", ".join(categories[:_MAX_LISTED])
    return shown + (f", ... ({len(categories)} in all)" if len(categories) > _MAX_LISTED else "")


def resolve_category(category: Optional[str], categories: Sequence[str]) -> Optional[str]:
    """Canonical category name (case/space-insensitive), None for None/blank; unknown -> ToolError."""
    if category is None or not str(category).strip():
        return None
    if category in categories:
        return category
    want = normalize_category(str(category))
    for c in categories:
        if normalize_category(c) == want:
            return c
    raise ToolError(f"unknown category {category!r}; valid categories: {list_categories(list(categories))}")


class Retriever:
    name = "base"

    def __init__(self, store: RuleStore):
        if not isinstance(store, RuleStore):
            raise TypeError(f"{type(self).__name__}: store must be a RuleStore, got {type(store).__name__}")
        self.store = store
        self.categories: list[str] = store.category_names

    def retrieve(self, query: str, category: Optional[str] = None,
                 policy: Optional[dict] = None) -> str:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store.name!r}, {len(self.categories)} categories)"


@register_retriever("whole_spec")
class WholeSpecRetriever(Retriever):
    name = "whole_spec"

    def __init__(self, store: RuleStore, compact: bool = True, max_cases_per_category: Optional[int] = 0):
        super().__init__(store)
        self.opts = dict(max_cases_per_category=max_cases_per_category, compact=compact)
        self.text = render_codes_and_cases(store, **self.opts)

    def retrieve(self, query: str = "", category: Optional[str] = None, policy: Optional[dict] = None) -> str:
        return render_codes_and_cases(self.store, policy=policy, **self.opts) if policy else self.text


@register_retriever("by_category")
class ByCategoryRetriever(Retriever):
    name = "by_category"

    def __init__(self, store: RuleStore, max_cases: Optional[int] = 2, compact: bool = False):
        super().__init__(store)
        self.max_cases, self.compact = max_cases, compact

    def retrieve(self, query: str = "", category: Optional[str] = None, policy: Optional[dict] = None) -> str:
        cat = resolve_category(category, self.categories)
        if cat is None and query and query.strip():
            try:
                cat = resolve_category(query, self.categories)
            except ToolError:
                cat = None
        if cat is None:
            raise ToolError("by_category retrieval needs argument 'category'; valid categories: "
                            + list_categories(self.categories))
        return render_category(self.store[cat], max_cases=self.max_cases, compact=self.compact, policy=policy)


def _stem(words: list[str]) -> list[str]:
    out = []
    for w in words:
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        out.append(w)
    return out


@register_retriever("bm25")
class BM25Retriever(Retriever):
    name = "bm25"

    def __init__(self, store: RuleStore, top_k: int = 3, include_category_text: bool = False):
        super().__init__(store)
        import bm25s  # numpy-only; no torch
        import bm25s.stopwords

        if top_k < 1:
            raise ValueError(f"bm25: top_k={top_k} must be >= 1")
        self._bm25s = bm25s
        self._stopwords = sorted(set(bm25s.stopwords.STOPWORDS_EN) | set(EXTRA_STOPWORDS))
        self.top_k = top_k
        # (category, rule id or None for an operator-set category's current-policy rule, indexed text)
        self.docs = [(c.name, r.id, r.text) for c, r in store.iter_rules()]
        self.docs += [(c.name, None, f"{c.name.replace('_', ' ')} {c.description}") for c in store.categories
                      if c.policy is not None]
        if not self.docs:
            raise ValueError(f"bm25: store {store.name!r} has no rules to index")
        descr = {c.name: f" {c.name.replace('_', ' ')} {c.description}" for c in store.categories}
        texts = [t + (descr[name] if include_category_text else "") for name, _, t in self.docs]
        self.index = bm25s.BM25()
        self.index.index([t or ["_"] for t in self._tokenize(texts)], show_progress=False)
        self._cat_of = [name for name, _, _ in self.docs]

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize(texts, stopwords=self._stopwords, stemmer=_stem, return_ids=False,
                                    show_progress=False, allow_empty=False)

    def scores(self, query: str) -> list[float]:
        toks = [t for t in self._tokenize([query or ""])[0] if t]
        if not toks:
            return [0.0] * len(self.docs)
        return [float(s) for s in self.index.get_scores(toks)]

    def retrieve(self, query: str = "", category: Optional[str] = None, policy: Optional[dict] = None) -> str:
        cat = resolve_category(category, self.categories)
        if cat is None and not (query or "").strip():
            raise ToolError("bm25 retrieval needs a non-empty 'query' or a 'category'")
        scores = self.scores(query or "")
        idx = [i for i in range(len(self.docs)) if cat is None or self._cat_of[i] == cat]
        hits = sorted((i for i in idx if scores[i] > 0), key=lambda i: (-scores[i], i))[: self.top_k]
        if not hits:
            if cat is None:
                return NO_MATCH_TEXT.format(categories=list_categories(self.categories))
            hits = idx[: self.top_k]
            if not hits:
                return render_category(self.store[cat], max_cases=0, policy=policy)
        return "\n".join(f"- [{self._cat_of[i]}] {self._text(i, policy)}" for i in hits)

    def _text(self, i: int, policy: Optional[dict]) -> str:
        name, rid, text = self.docs[i]
        if rid is not None:
            return text.strip()
        cat = self.store[name]
        return cat.policy.text(cat.verdict(policy))


def make_retriever(name: str, store: RuleStore, **opts: Any) -> Retriever:
    """Build the retriever called ``name`` (built-ins ``whole_spec`` | ``by_category`` | ``bm25``, a
    registered plug-in, or a ``"pkg.module:Class"`` path)."""
    if name not in RETRIEVERS and ":" not in str(name):
        raise ValueError(f"make_retriever: name={name!r} is not one of {RETRIEVERS.names()}")
    factory = RETRIEVERS.get(name)
    try:
        return factory(store, **opts)
    except TypeError as e:
        raise TypeError(f"make_retriever({name!r}): bad options {sorted(opts)}: {e}") from e
