"""CADA in-context rendering and the per-method system prompts."""

import re

import pytest

from ascl_ray.rollout.method import system_prompt
from ascl_ray.rollout.protocol import make_protocol
from ascl_ray.safety.render import (BASE_SYSTEM_PROMPT, pick_cases, render_category, render_codes_and_cases,
                                    render_long_rules)
from ascl_ray.safety.spec import Case, Category, Rule, RuleStore, load_default_store


@pytest.fixture(scope="module")
def store():
    return load_default_store()


def _words(text):
    return len(text.split())


def test_compact_whole_spec_is_short_and_complete(store):
    text = render_codes_and_cases(store, max_cases_per_category=0, compact=True)
    assert _words(text) < 250, _words(text)  # fits a ~512-token context with room to spare
    assert len(text.splitlines()) == len(store.categories)
    for cat in store.categories:
        assert re.search(rf"^{cat.name}: ", text, re.M)
        for rule in cat.rules:
            assert rule.text in text
    assert "->" not in text  # no cases


def test_codes_and_cases_keep_contrast_pairs(store):
    text = render_codes_and_cases(store, max_cases_per_category=2)
    vw = store["violence_weapons"]
    assert '"How do I shoot a good photo in low light?" -> comply' in text
    assert '"How do I shoot someone and not get caught?" -> refuse' in text
    assert vw.cases[2].request not in text  # third case cut by the limit
    assert "Why: " in text and "(contrast: vw.c2)" in text
    full = render_codes_and_cases(store, max_cases_per_category=None)
    assert all(k.request in full for _, k in store.iter_cases())
    only = render_codes_and_cases(store, categories=["general"])
    assert only.startswith("## general") and "cyber" not in only
    with pytest.raises(KeyError):
        render_codes_and_cases(store, categories=["nope"])


def test_pick_cases_pairs_first():
    cat = Category("c", "", (), (Case("a", "ra", "comply"), Case("b", "rb", "refuse", contrast_of="c"),
                                 Case("c", "rc", "comply", contrast_of="b")))
    assert [k.id for k in pick_cases(cat, 1)] == ["a"]
    assert [k.id for k in pick_cases(cat, 2)] == ["a", "b"]
    assert [k.id for k in pick_cases(Category("c", "", (), cat.cases[1:] + cat.cases[:1]), 2)] == ["b", "c"]
    assert len(pick_cases(cat, None)) == 3 and len(pick_cases(cat, 10)) == 3


def test_render_category_compact_has_examples(store):
    text = render_category(store["general"], max_cases=2, compact=True)
    lines = text.splitlines()
    assert lines[0].startswith("general: Answer benign requests")
    assert lines[1] == '  e.g. "How do I kill a python process?" -> comply'
    assert len(lines) == 3


def test_long_rules_lists_every_rule_and_detail(store):
    text = render_long_rules(store)
    for cat, rule in store.iter_rules():
        assert f"- [{rule.id}] {rule.text}" in text
    assert not any(k.request in text for _, k in store.iter_cases())
    detailed = RuleStore([Category("x", "X things", (Rule("x.1", "short", detail="the long version"),))])
    assert render_long_rules(detailed) == "## x: X things\n- [x.1] short\n  the long version"


METHODS = ("plain", "ascl", "cada", "rules_in_context")  # the built-in methods (ascl_ray.rollout.method)


def test_system_prompts_per_method(store):
    prompts = {m: system_prompt(m, store) for m in METHODS}
    assert prompts["plain"] == BASE_SYSTEM_PROMPT
    ascl = prompts["ascl"]
    assert "<tool_call>" in ascl and "retrieve_safety_rules" in ascl and "self_harm" in ascl
    assert not any(r.text in ascl for _, r in store.iter_rules())  # ASCL: rules only via the tool
    cada = prompts["cada"]
    assert all(r.text in cada for _, r in store.iter_rules()) and "-> refuse" in cada and "-> comply" in cada
    assert "<tool_call>" not in cada
    rules = prompts["rules_in_context"]
    assert all(f"[{r.id}]" in rules for _, r in store.iter_rules()) and "-> refuse" not in rules
    plain_tags = system_prompt("ascl", store, make_protocol("plain_tags", categories=store.category_names))
    assert "<rules_query>" in plain_tags and "<tool_call>" not in plain_tags
    assert system_prompt("ascl", store, "plain_tags") == plain_tags
    assert system_prompt("cada", store, base="B").startswith("B\n\n")
    small = system_prompt("cada", store, max_cases_per_category=0)
    assert "->" not in small and _words(small) < 250


def test_system_prompt_errors(store):
    with pytest.raises(ValueError, match="method='sft'"):
        system_prompt("sft", store)
    with pytest.raises(ValueError, match="needs a rule store"):
        system_prompt("cada", None)
    with pytest.raises(ValueError, match="needs a tool protocol"):
        system_prompt("ascl", store, protocol=None)
    assert "Categories:" not in system_prompt("ascl", None)
