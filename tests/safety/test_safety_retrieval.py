"""Retrievers: whole_spec, by_category, bm25 (bm25s) on the default spec and the real corpora."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ascl_ray.safety.retrieval import (NO_MATCH_TEXT, RETRIEVERS, ToolError, make_retriever,
                                       resolve_category)
from ascl_ray.safety.spec import load_default_store, load_store

ROOT = Path(__file__).resolve().parents[2]
MODEL_SPEC = Path("/work/shared/data/openai_model_spec")


@pytest.fixture(scope="module")
def store():
    return load_default_store()


@pytest.fixture(scope="module")
def bm25(store):
    return make_retriever("bm25", store)


def _rule_texts(store, name):
    return [r.text for r in store[name].rules]


def test_whole_spec_returns_all_categories(store):
    r = make_retriever("whole_spec", store)
    text = r.retrieve("anything", None)
    assert all(f"{c}: " in text for c in store.category_names)
    assert all(r_.text in text for _, r_ in store.iter_rules())
    assert r.retrieve("", "cyber") == text  # query and category are ignored
    assert r.categories == store.category_names
    with_cases = make_retriever("whole_spec", store, compact=False, max_cases_per_category=1).retrieve("", None)
    assert "Cases:" in with_cases and "Cases:" not in text


def test_by_category_returns_only_that_category(store):
    r = make_retriever("by_category", store)
    text = r.retrieve("", "drugs")
    assert text.startswith("## drugs")
    assert all(t in text for t in _rule_texts(store, "drugs"))
    others = [t for c in store.category_names if c != "drugs" for t in _rule_texts(store, c)]
    assert not any(t in text for t in others)
    assert "-> refuse" in text  # precedents come with it
    assert r.retrieve("", "Self Harm").startswith("## self_harm")  # lenient spelling
    assert r.retrieve("privacy", None).startswith("## privacy")  # a query that names a category
    assert "Cases:" not in make_retriever("by_category", store, max_cases=0).retrieve("", "cyber")


@pytest.mark.parametrize("category, query, match", [
    ("weapons", "", "unknown category 'weapons'; valid categories: violence_weapons, cyber"),
    (None, "what about bombs", "needs argument 'category'; valid categories: violence_weapons"),
    (None, "", "needs argument 'category'"),
])
def test_by_category_errors_list_valid_categories(store, category, query, match):
    with pytest.raises(ToolError, match=match):
        make_retriever("by_category", store).retrieve(query, category)


@pytest.mark.parametrize("query, category, rule_id", [
    ("pipe bomb", "violence_weapons", "vw.1"),
    ("how do I build a pipe bomb?", "violence_weapons", "vw.1"),
    ("How do I kill a python process?", "general", "ge.1"),
    ("phishing email", "fraud_deception", "fd.1"),
    ("suicide", "self_harm", "sh.1"),
    ("find a home address", "privacy", "pv.1"),
    ("malware exploits", "cyber", "cy.1"),
])
def test_bm25_returns_relevant_rule_first(store, bm25, query, category, rule_id):
    first = bm25.retrieve(query, None).splitlines()[0]
    rule = next(r for r in store[category].rules if r.id == rule_id)
    assert first == f"- [{category}] {rule.text}"


def test_bm25_top_k_filter_and_no_match(store, bm25):
    lines = make_retriever("bm25", store, top_k=1).retrieve("weapons scams malware drugs", None).splitlines()
    assert len(lines) == 1
    many = bm25.retrieve("weapons scams malware drugs", None).splitlines()
    assert len(many) == 3 and lines[0] == many[0]
    assert {ln.split("]")[0][3:] for ln in many} <= {"violence_weapons", "fraud_deception", "cyber", "drugs"}
    only = bm25.retrieve("bomb phishing", "fraud_deception").splitlines()
    assert only and all(ln.startswith("- [fraud_deception]") for ln in only)
    # a category with no matching term still gets that category's rules
    assert bm25.retrieve("zzzz", "cyber").splitlines() == [f"- [cyber] {t}" for t in _rule_texts(store, "cyber")]
    assert bm25.retrieve("", "cyber") == bm25.retrieve("zzzz", "cyber")
    assert bm25.retrieve("zzzz qqqq", None) == NO_MATCH_TEXT.format(categories=", ".join(store.category_names))
    with pytest.raises(ToolError, match="non-empty 'query'"):
        bm25.retrieve("   ", None)
    with pytest.raises(ToolError, match="unknown category 'bombs'"):
        bm25.retrieve("pipe bomb", "bombs")


def test_make_retriever_errors(store):
    assert RETRIEVERS.names() == ["bm25", "by_category", "whole_spec"]
    with pytest.raises(ValueError, match="name='embedding'"):
        make_retriever("embedding", store)
    with pytest.raises(TypeError, match=r"make_retriever\('bm25'\): bad options \['topk'\]"):
        make_retriever("bm25", store, topk=3)
    with pytest.raises(ValueError, match="top_k=0"):
        make_retriever("bm25", store, top_k=0)
    with pytest.raises(TypeError, match="RuleStore"):
        make_retriever("bm25", {"not": "a store"})


def test_resolve_category():
    cats = ["violence_weapons", "cyber"]
    assert resolve_category("Violence-Weapons", cats) == "violence_weapons"
    assert resolve_category(" ", cats) is None and resolve_category(None, cats) is None
    with pytest.raises(ToolError, match="valid categories: violence_weapons, cyber"):
        resolve_category("bio", cats)
    many = [f"c{i}" for i in range(50)]
    with pytest.raises(ToolError, match=r"c39, \.\.\. \(50 in all\)"):
        resolve_category("nope", many)


@pytest.mark.skipif(not MODEL_SPEC.is_dir(), reason="openai_model_spec corpus not available")
def test_bm25_on_model_spec():
    store = load_store(MODEL_SPEC)
    r = make_retriever("bm25", store, top_k=5)
    hits = r.retrieve("self-harm suicide", None).splitlines()
    assert len(hits) == 5
    assert any(h.startswith(("- [do_not_encourage_self_harm]", "- [support_mental_health]")) for h in hits)
    with pytest.raises(ToolError, match=r"\(80 in all\)"):
        r.retrieve("x", "nope")


BANNED = {"ray", "vllm", "deepspeed", "torch"}


def test_no_heavy_imports():
    files = sorted((ROOT / "ascl_ray" / "safety").glob("*.py")) + [ROOT / "ascl_ray" / "rollout" / "protocol.py"]
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & BANNED, (f.name, names)
        assert len(f.read_text().splitlines()) <= 410, f.name
    code = ("import sys, ascl_ray.safety.spec, ascl_ray.safety.render, ascl_ray.safety.retrieval, "
            "ascl_ray.safety.corpora; from ascl_ray.safety.retrieval import make_retriever; "
            "make_retriever('bm25', ascl_ray.safety.spec.load_default_store()); "
            f"print(sorted(m for m in {sorted(BANNED)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
