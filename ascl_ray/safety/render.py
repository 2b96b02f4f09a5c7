"""In-context renderings of a RuleStore: the rule text that system prompts carry.

- ``render_codes_and_cases``: CADA's simple codes + illustrative precedent cases.
- ``render_long_rules``: the "rules in context" / "SR w/ S" baseline: every rule with its
  optional detail, all categories, no cases (long for the real corpora, by design).
- ``codes_and_cases_section`` / ``long_rules_section``: those renderings under their prompt header.

The system prompt per method is composed by the method layer (``ascl_ray.rollout.method``: base
prompt + these sections or the tools' instructions); this module knows nothing of tools or methods.
The exact wording of the prompts is [ours]; all texts are module constants.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ascl_ray.safety.spec import Case, Category, RuleStore

BASE_SYSTEM_PROMPT = "You are a helpful assistant."
CADA_HEADER = ("Safety codes with example cases. Check the request against them: answer benign "
               "requests fully; refuse or safely complete only what a code forbids.")
LONG_RULES_HEADER = "Safety rules. Follow them when you answer."


def pick_cases(category: Category, n: Optional[int]) -> list[Case]:
    """Up to ``n`` cases (None: all) in file order, keeping a contrast pair together when room."""
    cases = list(category.cases)
    if n is None or n >= len(cases):
        return cases
    by_id = {k.id: k for k in cases}
    out: list[Case] = []
    for k in cases:
        if len(out) >= n:
            break
        if k in out:
            continue
        out.append(k)
        twin = by_id.get(k.contrast_of) if k.contrast_of else None
        if twin is not None and twin not in out and len(out) < n:
            out.append(twin)
    return out


def _quote(text: str) -> str:
    return '"' + " ".join(text.split()) + '"'


def rule_lines(category: Category, policy: Optional[dict] = None) -> list[tuple[str, str]]:
    """(id, text) of the category's codes; an operator-set category adds its current-policy rule
    (``policy``: {category: comply|refuse}; missing: the category's default)."""
    out = [(r.id, r.text.strip()) for r in category.rules]
    if category.policy is not None:
        out.append((f"{category.name}.policy", category.policy.text(category.verdict(policy))))
    return out


def render_category(category: Category, *, max_cases: Optional[int] = 2, compact: bool = False,
                    with_description: bool = True, policy: Optional[dict] = None) -> str:
    """One category: its codes (the current-policy rule of an operator-set category included), then up
    to ``max_cases`` cases (0: none, None: all)."""
    cases = pick_cases(category, max_cases) if max_cases != 0 else []
    rules = rule_lines(category, policy)
    if compact:
        head = f"{category.name}: " + " ".join(text for _, text in rules)
        lines = [head.rstrip()]
        lines += [f"  e.g. {_quote(k.request)} -> {k.verdict}" for k in cases]
        return "\n".join(lines)
    title = f"## {category.name}" + (f": {category.description}" if with_description and category.description else "")
    lines = [title]
    if rules:
        lines.append("Codes:")
        lines += [f"- [{rid}] {text}" for rid, text in rules]
    if cases:
        lines.append("Cases:")
        for k in cases:
            line = f"- [{k.id}] {_quote(k.request)} -> {k.verdict}."
            if k.rationale:
                line += f" Why: {k.rationale.strip()}"
            if k.contrast_of:
                line += f" (contrast: {k.contrast_of})"
            lines.append(line)
    return "\n".join(lines)


def _cats(store: RuleStore, categories: Optional[Sequence[str]]) -> list[Category]:
    if categories is None:
        return list(store.categories)
    unknown = [c for c in categories if c not in store]
    if unknown:
        raise KeyError(f"unknown categories {unknown}; valid: {store.category_names}")
    return [store[c] for c in categories]


def render_codes_and_cases(store: RuleStore, max_cases_per_category: Optional[int] = 2, compact: bool = False,
                           categories: Optional[Sequence[str]] = None, policy: Optional[dict] = None) -> str:
    """CADA in-context spec: simple codes + illustrative cases for every (or the given) category.

    ``compact=True`` is one line of codes per category plus ``e.g. "request" -> verdict`` lines;
    with ``max_cases_per_category=0`` it is the whole spec in its shortest form.
    """
    sep = "\n" if compact else "\n\n"
    return sep.join(render_category(c, max_cases=max_cases_per_category, compact=compact, policy=policy)
                    for c in _cats(store, categories))


def render_long_rules(store: RuleStore, categories: Optional[Sequence[str]] = None) -> str:
    """The full detailed rule list (no cases): the "rules in context" / "SR w/ S" baseline."""
    blocks = []
    for c in _cats(store, categories):
        lines = [f"## {c.name}" + (f": {c.description}" if c.description else "")]
        for r in c.rules:
            lines.append(f"- [{r.id}] {r.text.strip()}")
            if r.detail.strip():
                lines.append(f"  {r.detail.strip()}")
        lines += [f"- [{rid}] {text}" for rid, text in rule_lines(c)[len(c.rules):]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def codes_and_cases_section(store: RuleStore, max_cases_per_category: Optional[int] = 2,
                            compact: bool = True) -> str:
    """CADA's prompt section: ``CADA_HEADER`` then ``render_codes_and_cases`` (one newline between)."""
    body = render_codes_and_cases(store, max_cases_per_category=max_cases_per_category, compact=compact)
    return f"{CADA_HEADER}\n{body}"


def long_rules_section(store: RuleStore) -> str:
    """The rules-in-context prompt section: ``LONG_RULES_HEADER``, a blank line, ``render_long_rules``."""
    return f"{LONG_RULES_HEADER}\n\n{render_long_rules(store)}"
