"""One call for the driver: run the configured advantage estimator and collect its metrics and state.

    out = estimate(name, rewards, group_ids, modes, options=..., state=..., prompt_types=...)
    out.advantages  # [B] tensor (the checked estimator's output)
    out.metrics     # {str: float}: common metrics + the estimator's own (its registered ``metrics`` hook)
    out.state       # the estimator's state across iterations (a dict it updates; checkpointed by the caller)

An estimator owns its state and its metrics: it takes ``state`` as a keyword argument when it keeps any
(e.g. IFPO's moving average of the consultation rate), and registers a metrics hook with
``register_advantage_estimator(name, metrics=fn)``. The driver never checks an estimator's name.

Hook signature: ``fn(rewards, group_ids, modes, advantages, *, options, state, prompt_types) -> dict``
(tensors [B]; ``options`` without ``state``; ``state`` after this call's update; floats out).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .advantages import ADVANTAGE_ESTIMATORS, get_advantage_estimator
from .groups import make_groups, validate_inputs

__all__ = ["AdvantageOutput", "estimate", "takes_state", "groups_both_modes"]


@dataclass
class AdvantageOutput:
    advantages: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict = field(default_factory=dict)


def takes_state(fn: Callable) -> bool:
    """True when ``fn`` names a ``state`` parameter (a ``**kwargs`` catch-all does not count)."""
    try:
        p = inspect.signature(fn).parameters.get("state")
    except (TypeError, ValueError):
        return False
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def groups_both_modes(group_ids: Any, modes: Any) -> float:
    """Share of groups that hold both a consult and a direct sample (K = 2)."""
    _, g, m = validate_inputs(torch.zeros(len(group_ids), dtype=torch.float64), group_ids, modes)
    if m is None:
        raise ValueError("groups_both_modes needs `modes`")
    return make_groups(g).both_modes_share(m)


def estimate(name: str | Callable, rewards: Any, group_ids: Any, modes: Any = None, *,
             options: Optional[dict] = None, state: Optional[dict] = None,
             prompt_types: Optional[list[str]] = None) -> AdvantageOutput:
    """Advantages [B] + metrics + state of the estimator ``name`` (registered name, 'module:fn' or callable).

    ``state`` is the dict returned last time (None: a fresh one); it is passed to an estimator that takes
    ``state`` and returned (updated in place) either way. ``options`` must not contain ``state``.
    """
    opts = dict(options or {})
    if "state" in opts:
        raise ValueError("estimate: pass the estimator state as `state=`, not inside `options`")
    raw = ADVANTAGE_ESTIMATORS.get(name)
    state = {} if state is None else state
    call_opts = {**opts, "state": state} if takes_state(raw) else opts
    adv = get_advantage_estimator(name)(rewards, group_ids, modes, **call_opts)
    metrics: dict[str, float] = {"advantage/abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0}
    if modes is not None:
        metrics["consultation/groups_both_modes"] = groups_both_modes(group_ids, modes)
    hook = getattr(raw, "advantage_metrics", None)
    if hook is not None:
        extra = hook(rewards, group_ids, modes, adv, options=opts, state=state, prompt_types=prompt_types)
        metrics.update({str(k): float(v) for k, v in extra.items()})
    return AdvantageOutput(adv, metrics, state)
