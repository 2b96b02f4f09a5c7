"""Sequence-level advantage estimators (outcome rewards, one scalar advantage per rollout).

Every estimator has the signature::

    f(rewards, group_ids, modes=None, **options) -> advantages

    rewards:   float [B] sequence rewards (finite)
    group_ids: int   [B] samples of one prompt share an id; groups are NEVER inferred from
               positions: they may come in any order, interleaved, of different sizes
    modes:     bool/int [B] (True/1 = consulted the rule tool) or None; only ``ifpo`` uses it
    returns:   float [B] (dtype of ``rewards`` when floating, else float32; computed in float64)

Built-ins: ``grpo``, ``rloo``, ``reinforce_pp_baseline``, ``ifpo``. Register your own with
``@register_advantage_estimator("name")`` or refer to it as ``"pkg.module:function"``.
``get_advantage_estimator`` wraps any estimator with input validation and an output check
(shape [B], no NaN/inf).

Std convention: SAMPLE (unbiased, n-1) standard deviation, like ``torch.std`` as used by verl.
Groups of size 1 have std 0 and advantage 0 in every built-in estimator; groups whose rewards are
all equal get advantage exactly 0.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import torch

from .groups import make_groups, out_dtype, validate_inputs
from .ifpo import check_ifpo_options, ifpo_metrics, ifpo_weights
from ascl_ray.registry import Registry

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "register_advantage_estimator",
    "get_advantage_estimator",
    "list_advantage_estimators",
    "grpo_advantages",
    "rloo_advantages",
    "reinforce_pp_baseline_advantages",
    "ifpo_advantages",
    "filter_uniform_groups",
]

ADVANTAGE_ESTIMATORS = Registry("advantage estimator", point="advantage_estimator")


def register_advantage_estimator(name: str, *, overwrite: bool = False, metrics: Optional[Callable] = None) -> Callable:
    """Decorator: register ``f(rewards, group_ids, modes=None, **options) -> advantages [B]``.

    An estimator with state across iterations takes a ``state`` keyword (a dict it updates); ``metrics``
    is its logging hook (see :mod:`ascl_ray.algo.estimate`), attached as ``f.advantage_metrics``."""
    reg = ADVANTAGE_ESTIMATORS.register(name, overwrite=overwrite)

    def deco(f: Callable) -> Callable:
        if metrics is not None:
            f.advantage_metrics = metrics  # type: ignore[attr-defined]
        return reg(f)

    return deco


def list_advantage_estimators() -> list[str]:
    return ADVANTAGE_ESTIMATORS.names()


def get_advantage_estimator(name: str | Callable) -> Callable:
    """Return the estimator for a registered name or a ``"module:function"`` path, wrapped so that
    inputs are validated (errors name the argument) and the output is checked: shape [B], finite."""
    fn = ADVANTAGE_ESTIMATORS.get(name)
    label = name if isinstance(name, str) else getattr(fn, "__name__", repr(fn))

    @functools.wraps(fn)
    def checked(rewards: Any, group_ids: Any, modes: Any = None, **options: Any) -> torch.Tensor:
        validate_inputs(rewards, group_ids, modes)
        adv = fn(rewards, group_ids, modes, **options)
        if not isinstance(adv, torch.Tensor):
            adv = torch.as_tensor(adv)
        n = len(rewards)
        if tuple(adv.shape) != (n,):
            raise ValueError(f"advantage estimator {label!r} returned shape {tuple(adv.shape)}, expected ({n},)")
        if not bool(torch.isfinite(adv).all()):
            raise ValueError(f"advantage estimator {label!r} returned NaN/inf advantages")
        return adv

    return checked


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"option eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"option {name} must be True or False, got {v!r}")
    return v


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den == 0 (num is 0 there for every caller: uniform groups)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


@register_advantage_estimator("grpo")
def grpo_advantages(
    rewards: Any, group_ids: Any, modes: Any = None, *, norm_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO: A_i = (r_i - mean_g) / (std_g + eps); ``norm_std=False`` -> Dr.GRPO: A_i = r_i - mean_g.

    std_g is the sample (n-1) std of the group; size-1 and all-equal groups get A = 0.
    ``modes`` is ignored. Shapes: [B] -> [B].
    """
    dtype = out_dtype(rewards)
    r, g, _ = validate_inputs(rewards, group_ids, modes)
    norm_std, eps = _check_flag("norm_std", norm_std), _check_eps(eps)
    grp = make_groups(g)
    adv = grp.centered(r)
    if norm_std:
        adv = _safe_div(adv, grp.std(r)[grp.inverse] + eps)
    return adv.to(dtype)


@register_advantage_estimator("rloo")
def rloo_advantages(rewards: Any, group_ids: Any, modes: Any = None) -> torch.Tensor:
    """RLOO: A_i = r_i - mean of the other G-1 rewards of the group = G/(G-1) * (r_i - mean_g).

    Size-1 groups get A = 0. ``modes`` is ignored. Shapes: [B] -> [B].
    """
    dtype = out_dtype(rewards)
    r, g, _ = validate_inputs(rewards, group_ids, modes)
    grp = make_groups(g)
    size = grp.sizes().to(torch.float64)
    others_mean = (grp.sum(r)[grp.inverse] - r) / (size - 1).clamp(min=1)
    adv = torch.where(size > 1, r - others_mean, torch.zeros_like(r))
    adv = torch.where(grp.uniform(r), torch.zeros_like(adv), adv)
    return adv.to(dtype)


@register_advantage_estimator("reinforce_pp_baseline")
def reinforce_pp_baseline_advantages(
    rewards: Any, group_ids: Any, modes: Any = None, *, eps: float = 1e-6
) -> torch.Tensor:
    """REINFORCE++-baseline (OpenRLHF): c_i = r_i - mean_g, then A_i = c_i / (std_batch(c) + eps).

    std_batch is the sample (n-1) std of the group-centred values over the whole batch (their batch
    mean is 0, so "whitening" reduces to this division). All-zero c -> A = 0. Sequence level:
    OpenRLHF whitens over tokens, i.e. weights sequences by length; we do not.
    """
    dtype = out_dtype(rewards)
    r, g, _ = validate_inputs(rewards, group_ids, modes)
    eps = _check_eps(eps)
    c = make_groups(g).centered(r)
    std = c.std() if c.numel() > 1 else torch.zeros((), dtype=c.dtype, device=c.device)
    adv = _safe_div(c, (std + eps).expand_as(c))
    return adv.to(dtype)


@register_advantage_estimator("ifpo", metrics=ifpo_metrics)
def ifpo_advantages(
    rewards: Any,
    group_ids: Any,
    modes: Any = None,
    *,
    norm_std: bool = True,
    eps: float = 1e-6,
    freq_scope: str = "group",
    w_min: float = 0.25,
    w_max: float = 4.0,
    apply_to: str = "all",
    ema_momentum: float = 0.9,
    state: Optional[dict] = None,
) -> torch.Tensor:
    """IFPO [ours, methods.md section 3]: A_hat_i = w_{m_i} * A_i with A the GRPO advantage.

    A: ``grpo_advantages(rewards, group_ids, norm_std=norm_std, eps=eps)``
    w: ``ifpo_weights(group_ids, modes, freq_scope=..., w_min=..., w_max=..., ema_momentum=..., state=...)``
    apply_to="all": A_hat = w * A; "positive_only": A_hat = w * A where A > 0, else A.
    If every group has a single mode (freq_scope="group") this is exactly GRPO.
    freq_scope="ema" updates ``state["p_ema"]`` (one update per call).
    """
    if modes is None:
        raise ValueError("ifpo needs `modes` ([B] bool, True = consulted the rule tool); got modes=None")
    dtype = out_dtype(rewards)
    r, g, m = validate_inputs(rewards, group_ids, modes)
    check_ifpo_options(
        freq_scope=freq_scope, w_min=w_min, w_max=w_max, apply_to=apply_to, ema_momentum=ema_momentum, state=state
    )
    adv = grpo_advantages(r, g, norm_std=norm_std, eps=eps)  # float64
    w = ifpo_weights(
        g, m, freq_scope=freq_scope, w_min=w_min, w_max=w_max, ema_momentum=ema_momentum, state=state,
        update_state=True,
    )
    if apply_to == "positive_only":
        w = torch.where(adv > 0, w, torch.ones_like(w))
    return (w * adv).to(dtype)


def filter_uniform_groups(rewards: Any, group_ids: Any, *, atol: float = 0.0) -> torch.Tensor:
    """DAPO dynamic sampling: keep mask [B] bool, False for every sample of a group whose rewards
    are all equal (max - min <= atol), i.e. groups that carry no GRPO signal. Size-1 groups are
    uniform and therefore dropped."""
    r, g, _ = validate_inputs(rewards, group_ids)
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not (atol >= 0):
        raise ValueError(f"option atol must be a number >= 0, got {atol!r}")
    grp = make_groups(g)
    spread = (grp.amax(r) - grp.amin(r))[grp.inverse]
    return spread > atol
