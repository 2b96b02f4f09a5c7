"""The one name -> callable registry of ascl-ray, used by every plug-in point: advantage estimators,
policy losses, judges, reward rules (one per prompt kind), tools, tool wire formats, retrievers,
methods and weight-sync channels. Pure (standard library only).

Every ``Registry(kind, point=...)`` is listed in :data:`REGISTRIES` under its plug-in point, so config
validation reads the valid names from it and contract tests run over every registered entry
(``all_registries()`` imports the built-in modules first).

A name is either

* a registered short name, e.g. ``"grpo"``, or
* a dotted path ``"pkg.module:function"`` (also ``"pkg.module:Class.attr"``), imported lazily on
  first use. This lets a user's function resolve inside remote actor processes that never
  executed the user's ``@register_...`` decorator: the worker only needs the module importable.

``import_plugins(["my_pkg.my_losses"])`` imports modules by name so that their decorators run.

Errors: an unknown name raises :class:`UnknownNameError`, which is both a ``KeyError`` and a
``ValueError`` and whose message lists the registered names.
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterable, Optional, TypeVar

F = TypeVar("F", bound=Callable)

__all__ = ["Registry", "UnknownNameError", "import_plugins", "resolve_dotted", "REGISTRIES", "BUILTIN_MODULES",
           "get_registry", "all_registries"]

# plug-in point -> its registry (filled as the modules that define them are imported)
REGISTRIES: dict[str, "Registry"] = {}

# plug-in point -> the built-in modules whose import registers its entries (pure modules: no Ray,
# vLLM or DeepSpeed). ``get_registry`` imports them, so names are complete wherever they are read.
BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "advantage_estimator": ("ascl_ray.algo.advantages",),
    "policy_loss": ("ascl_ray.algo.losses",),
    "judge": ("ascl_ray.reward.judges",),
    "reward_rule": ("ascl_ray.reward.rules",),
    "sync_channel": ("ascl_ray.sync.channels",),
    "corpus_loader": ("ascl_ray.safety.corpora",),
    "retriever": ("ascl_ray.safety.retrieval",),
    "tool": ("ascl_ray.tools.safety_rules",),
    "wire_format": ("ascl_ray.tools.formats",),
    "method": ("ascl_ray.rollout.method",),
}


class UnknownNameError(KeyError, ValueError):
    """Unknown registry name. Subclasses both KeyError and ValueError; ``str()`` is the plain message."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message (adding quotes)
        return str(self.args[0]) if self.args else ""


def resolve_dotted(path: str) -> object:
    """Import ``"pkg.module:attr.sub"`` and return the attribute. Raises ImportError/AttributeError."""
    module_name, _, attr_path = path.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"dotted path {path!r} must look like 'pkg.module:function'")
    obj: object = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """Maps names to callables of one kind (``kind`` is used in error messages, e.g. "advantage estimator")."""

    def __init__(self, kind: str, point: Optional[str] = None) -> None:
        """``kind``: words for messages ("advantage estimator"); ``point``: the plug-in point's key in
        :data:`REGISTRIES` (a registry without one is private, e.g. in a test)."""
        self.kind = kind
        self.point = point
        self._items: dict[str, Callable] = {}
        if point is not None:
            if point in REGISTRIES:
                raise ValueError(f"plug-in point {point!r} already has a registry ({REGISTRIES[point]!r})")
            REGISTRIES[point] = self

    # ------------------------------------------------------------------ registration
    def register(self, name: str, fn: Optional[Callable] = None, *, overwrite: bool = False):
        """Register ``fn`` under ``name``; usable as ``@registry.register("name")`` or directly.

        Re-registering a name with a different object raises ValueError unless ``overwrite=True``.
        Re-registering the *same* function (same module and qualified name, e.g. after a module
        reload or a second import under a different path) silently replaces it.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must not contain ':' (reserved for 'module:function' paths)")

        def deco(f: F) -> F:
            if not callable(f):
                raise TypeError(f"{self.kind} {name!r}: registered object {f!r} is not callable")
            old = self._items.get(name)
            if old is not None and old is not f and not overwrite and _qualname(old) != _qualname(f):
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (to {_qualname(old)}); "
                    f"pass overwrite=True to replace it"
                )
            self._items[name] = f
            return f

        return deco if fn is None else deco(fn)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error when absent). Mostly for tests."""
        self._items.pop(name, None)

    # ------------------------------------------------------------------ lookup
    def get(self, name: str | Callable) -> Callable:
        """Return the callable for ``name`` (a callable is returned unchanged)."""
        if callable(name):
            return name
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string or a callable, got {type(name).__name__}")
        if name in self._items:
            return self._items[name]
        if ":" in name:
            try:
                obj = resolve_dotted(name)
            except (ImportError, AttributeError, ValueError) as exc:
                raise UnknownNameError(
                    f"unknown {self.kind} {name!r}: could not import it as 'module:function' "
                    f"({type(exc).__name__}: {exc}); registered names: {self.names()}"
                ) from exc
            if not callable(obj):
                raise TypeError(f"{self.kind} {name!r} resolved to a non-callable {type(obj).__name__}")
            return obj
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; registered names: {self.names()} "
            f"(or give a 'module:function' path, or import its plugin module with import_plugins)"
        )

    def names(self) -> list[str]:
        return sorted(self._items)

    def names_in_order(self) -> list[str]:
        """Names in registration order (built-ins first, then plug-ins as they were imported)."""
        return list(self._items)

    def items(self) -> list[tuple[str, Callable]]:
        return sorted(self._items.items())

    def create(self, name: str | Callable, *args, **kwargs):
        """``get(name)(*args, **kwargs)``: build the entry (a class or a factory function)."""
        return self.get(name)(*args, **kwargs)

    def check(self, name: object, key: str) -> None:
        """ValueError starting with the config ``key`` unless ``name`` is registered (or a 'module:fn'
        path that imports, or a callable): what config validation calls."""
        if callable(name):
            return
        try:
            self.get(name)  # type: ignore[arg-type]
        except (UnknownNameError, TypeError) as e:
            raise ValueError(f"{key}: {e}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _qualname(f: Callable) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def import_plugins(modules: Iterable[str] | str | None) -> list:
    """Import each module by name (so its ``@register_...`` decorators run); return the modules.

    A single string is treated as one module name; ``None`` or ``[]`` imports nothing.
    An import failure raises ImportError naming the module.
    """
    if modules is None:
        return []
    if isinstance(modules, str):
        modules = [modules]
    out = []
    for name in modules:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"import_plugins: module names must be non-empty strings, got {name!r}")
        try:
            out.append(importlib.import_module(name.strip()))
        except ImportError as exc:
            raise ImportError(f"import_plugins: cannot import plugin module {name!r}: {exc}") from exc
    return out


def get_registry(point: str) -> Registry:
    """The registry of plug-in ``point`` with its built-in entries imported."""
    for mod in BUILTIN_MODULES.get(point, ()):
        importlib.import_module(mod)
    if point not in REGISTRIES:
        raise UnknownNameError(f"unknown plug-in point {point!r}; known: {sorted(set(REGISTRIES) | set(BUILTIN_MODULES))}")
    return REGISTRIES[point]


def all_registries() -> dict[str, Registry]:
    """Every plug-in point's registry, built-ins imported (for contract tests and ``ascl-ray plugins``)."""
    return {p: get_registry(p) for p in sorted(set(BUILTIN_MODULES) | set(REGISTRIES))}
