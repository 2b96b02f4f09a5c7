"""Judge interface and registry (no backend code here; stdlib + ``ascl_ray.registry`` only).

``JudgeVerdict``: ``safe`` (the response is acceptable for the prompt), ``refusal`` (the response is a full or
partial refusal), ``score`` (confidence that the response is safe, in [0, 1]), ``raw`` (the backend's raw
output, for logs), ``valid`` (False when the backend's output could not be understood; such verdicts are
conservatively ``safe=False``), ``categories`` (violated categories when the backend names them).

``register_judge(name, factory)`` (or ``@register_judge(name)``) adds a backend to ``JUDGES``, the
``Registry("judge", point="judge")`` (a name taken by a different factory is a ValueError unless
``overwrite=True``; a ``"module:factory"`` path works as a name too); ``get_judge(name, **options)`` builds it.
The built-in backends register in ``ascl_ray.reward.judges``, which the lookups below import first (through
``get_registry("judge")``). Options are checked against the factory's signature first: an option it does not
take is a ``JudgeOptionError`` (a ``ValueError``) whose one-line message names the option and lists the ones it
takes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

from ascl_ray.registry import Registry, get_registry

__all__ = ["JudgeVerdict", "SafetyJudge", "GenerationEngine", "JudgeOptionError", "JUDGES", "register_judge",
           "get_judge", "available_judges", "judge_options", "check_options"]


@dataclass
class JudgeVerdict:
    safe: bool
    refusal: bool
    score: float  # confidence that the response is safe, in [0, 1]
    raw: str = ""
    valid: bool = True
    categories: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"safe": self.safe, "refusal": self.refusal, "score": self.score, "raw": self.raw,
                "valid": self.valid, "categories": list(self.categories)}


class GenerationEngine(Protocol):
    def generate(self, prompts: list[str]) -> list[str]: ...


class SafetyJudge:
    """Base class: subclasses implement ``_judge`` on validated, equal-length lists."""

    name = "base"

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[JudgeVerdict]:
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"{type(self).__name__}.judge: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        prompts = ["" if p is None else str(p) for p in prompts]
        responses = ["" if r is None else str(r) for r in responses]
        out = self._judge(prompts, responses)
        if len(out) != len(prompts):
            raise RuntimeError(f"{type(self).__name__} returned {len(out)} verdicts for {len(prompts)} pairs")
        return out

    def _judge(self, prompts: list[str], responses: list[str]) -> list[JudgeVerdict]:  # pragma: no cover
        raise NotImplementedError


class JudgeOptionError(ValueError):
    """An option the judge does not take (one-line message naming it)."""


# the judge registry (plug-in point "judge"): name -> factory (a class or function taking the options as kwargs)
JUDGES = Registry("judge", point="judge")


def register_judge(name: str, factory: Optional[Callable[..., Any]] = None, *, overwrite: bool = False):
    """Register ``factory`` (a class or function taking the judge options as kwargs) under ``name``.

    Usable directly (``register_judge("x", MyJudge)``) or as a decorator (``@register_judge("x")``).
    A name taken by a different factory is a ValueError unless ``overwrite=True`` (re-registering the
    same factory, e.g. on a module re-import, is fine): the rule of :class:`ascl_ray.registry.Registry`.
    """
    return JUDGES.register(name, factory, overwrite=overwrite)


def _judges() -> Registry:
    """``JUDGES`` with the built-in backends imported (``BUILTIN_MODULES["judge"]``)."""
    return get_registry("judge")


def available_judges() -> list[str]:
    """Registered judge names, sorted (built-ins and whatever plug-in modules registered)."""
    return _judges().names()


def judge_options(name: str) -> Optional[list[str]]:
    """The option names judge ``name`` takes; None when its factory takes any keyword (``**kwargs``).
    An unknown name is a ``KeyError`` (``UnknownNameError``) listing the registered ones."""
    factory = _judges().get(name)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins / C callables: cannot tell
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                 inspect.Parameter.KEYWORD_ONLY)]


def check_options(name: str, options: dict) -> None:
    """``JudgeOptionError`` naming the first option judge ``name`` does not take."""
    known = judge_options(name)
    if known is None:
        return
    for k in options:
        if k not in known:
            raise JudgeOptionError(f"judge {name!r} does not take option {k!r}; its options: "
                                   f"{', '.join(known) if known else '(none)'}")


def get_judge(name: str, **options: Any) -> Any:
    """Build the judge registered as ``name`` with ``options`` (checked against its signature first)."""
    check_options(name, options)
    j = _judges().get(name)(**options)
    if not hasattr(j, "judge"):
        raise TypeError(f"judge factory {name!r} returned {type(j).__name__} without a judge() method")
    return j
