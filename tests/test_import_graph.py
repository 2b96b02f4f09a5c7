"""The import graph of ``ascl_ray``, read from the source with ``ast`` (nothing is imported).

Every ``import`` counts: module level and inside functions (a lazy import is still a dependency),
except those under ``if TYPE_CHECKING:``. Checked:

- the module graph (``ascl_ray.a.b`` -> ``ascl_ray.c.d``) is acyclic;
- the subpackage graph (``ascl_ray.X``: a subpackage or a top-level module) is acyclic;
- the pure modules import neither ray, vllm nor deepspeed, directly or through the ascl_ray modules
  they import (importing ``ascl_ray.p.m`` also runs ``ascl_ray/p/__init__.py``, so package
  ``__init__`` files count there).

A failure prints the cycle (``a -> b -> a``) or the import chain that reaches the banned library.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "ascl_ray"
BANNED = ("ray", "vllm", "deepspeed")


# ------------------------------------------------------------------------------------------ the graph
@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Module name -> file, for every .py file under ascl_ray/ (a package is its __init__.py)."""
    out = {}
    for f in sorted((ROOT / PKG).rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every Import/ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _resolve_relative(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


@lru_cache(maxsize=1)
def raw_imports() -> dict[str, set[str]]:
    """Module -> every absolute module name it imports (third-party ones included, as written)."""
    mods = modules()
    out: dict[str, set[str]] = {}
    for mod, path in mods.items():
        names: set[str] = set()
        is_pkg = path.name == "__init__.py"
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
                continue
            target = node.module or ""
            if node.level:
                target = _resolve_relative(mod, is_pkg, node.level, node.module)
            names.add(target)
            for a in node.names:  # `from pkg import submodule` imports the submodule
                if f"{target}.{a.name}" in mods:
                    names.add(f"{target}.{a.name}")
        out[mod] = names
    return out


def _internal(name: str) -> Optional[str]:
    """The ascl_ray module ``name`` refers to (the longest existing prefix), or None if external."""
    mods = modules()
    parts = name.split(".")
    if parts[0] != PKG:
        return None
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in mods:
            return cand
    return None


@lru_cache(maxsize=1)
def module_graph() -> dict[str, set[str]]:
    """Module -> the ascl_ray modules it imports by name (self-edges dropped)."""
    g = {}
    for mod, names in raw_imports().items():
        g[mod] = {t for n in names if (t := _internal(n)) is not None and t != mod}
    return g


def _parents(mod: str) -> list[str]:
    """The packages whose ``__init__`` runs when ``mod`` is imported (outermost first)."""
    parts = mod.split(".")
    return [p for k in range(1, len(parts)) if (p := ".".join(parts[:k])) in modules()]


def subpackage(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def subpackage_graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for mod, targets in module_graph().items():
        src = subpackage(mod)
        g.setdefault(src, set())
        g[src].update(t for tgt in targets if (t := subpackage(tgt)) != src)
    return g


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per non-trivial strongly connected component, each as a closed path."""
    return [_cycle_in(graph, set(c)) for c in find_sccs(graph)]


def find_sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # iterative enough for this graph's depth
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(sorted(c) for c in sccs)


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A closed path a -> ... -> a inside one strongly connected component (BFS back to the start)."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ()) & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)  # pragma: no cover - a component always has a cycle


def _show(graph: dict[str, set[str]]) -> str:
    """Each tangle: one cycle through it, and every member (a tangle may hold several cycles)."""
    return "\n".join(f"{' -> '.join(_cycle_in(graph, set(c)))}   (tangled: {', '.join(c)})"
                     for c in find_sccs(graph))


# ------------------------------------------------------------------------------------------ acyclicity
def test_graph_sees_the_package():
    mods = module_graph()
    assert "ascl_ray.registry" in mods and "ascl_ray.safety.spec" in mods
    assert "ascl_ray.safety.spec" in mods["ascl_ray.safety.retrieval"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_module_graph_is_acyclic():
    g = module_graph()
    assert not find_cycles(g), "import cycles between modules:\n" + _show(g)


def test_subpackage_graph_is_acyclic():
    g = subpackage_graph()
    assert not find_cycles(g), "import cycles between subpackages of ascl_ray:\n" + _show(g)


def test_layering_registry_safety_tools_rollout():
    """registry < safety < tools < rollout: no import goes down this order the wrong way."""
    order = ["ascl_ray.registry", "ascl_ray.safety", "ascl_ray.tools", "ascl_ray.rollout"]
    g = subpackage_graph()
    for i, low_pkg in enumerate(order):
        for high in order[i + 1:]:
            assert high not in g.get(low_pkg, set()), f"{low_pkg} imports {high}"


# ------------------------------------------------------------------------------------------ purity
PURE_PREFIXES = ("ascl_ray.algo", "ascl_ray.safety", "ascl_ray.tools")
PURE_MODULES = ("ascl_ray.registry", "ascl_ray.batch", "ascl_ray.reward.math", "ascl_ray.reward.refusal",
                "ascl_ray.reward.scoring", "ascl_ray.reward.rules", "ascl_ray.eval.metrics",
                "ascl_ray.rollout.protocol", "ascl_ray.checkpoint")


def pure_modules() -> list[str]:
    mods = modules()
    out = [m for m in mods if any(m == p or m.startswith(p + ".") for p in PURE_PREFIXES)]
    out += [m for m in PURE_MODULES if m in mods]  # optional ones (rules.py, protocol.py) when present
    return sorted(set(out))


def banned_chain(start: str) -> Optional[list[str]]:
    """The import chain from ``start`` to a banned library (BFS over ascl_ray modules, parent packages'
    ``__init__`` included), or None."""
    raw = raw_imports()
    prev: dict[str, Optional[str]] = {start: None}
    queue = [start]
    while queue:
        mod = queue.pop(0)
        for name in sorted(raw[mod]):
            if name.split(".")[0] in BANNED:
                chain = [name, mod]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])  # type: ignore[arg-type]
                return chain[::-1]
        targets = set(module_graph()[mod])
        for t in list(targets):
            targets.update(_parents(t))
        targets.update(_parents(mod))
        for t in sorted(targets - set(prev)):
            prev[t] = mod
            queue.append(t)
    return None


def test_pure_module_list_is_not_empty():
    mods = pure_modules()
    assert {"ascl_ray.registry", "ascl_ray.safety.spec", "ascl_ray.algo.advantages"} <= set(mods)
    assert any(m.startswith("ascl_ray.tools") for m in mods)


@pytest.mark.parametrize("mod", pure_modules())
def test_pure_module_imports_no_ray_vllm_deepspeed(mod):
    chain = banned_chain(mod)
    assert chain is None, f"{mod} reaches a banned library: " + " -> ".join(chain or [])
