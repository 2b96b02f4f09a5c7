"""IFPO (Inverse Frequency Policy Optimization) weights and logging stats.

methods.md section 3. The formula below is OUR interpretation ([ours]); the paper states the goal
(rebalance advantages by the inverse frequency of the behaviour), not the exact formula.

Modes: ``modes[i]`` True/1 = rollout i consulted the rule tool ("consult"), False/0 = "direct".
Only these two modes are supported.

``freq_scope="group"`` (default), per group of G rollouts of one prompt:
    n_m = count of mode m in the group, K = number of modes present (1 or 2)
    w_m = clip(G / (K * n_m), w_min, w_max)
    K = 1 -> every weight is exactly 1 (IFPO == GRPO). With both modes and no clip binding,
    each mode carries total weight G/2 in its group.
``freq_scope="batch"``: p = consultation rate of the whole batch,
    w_consult = clip(1/(2p)), w_direct = clip(1/(2(1-p))); p in {0, 1} -> all weights 1.
``freq_scope="ema"``: as "batch" but p is an exponential moving average kept in ``state``
    (a caller-owned dict, key ``"p_ema"``): p <- momentum * p + (1 - momentum) * p_batch, and the
    first call initialises p = p_batch. The updated p is the one used for this batch's weights.

Shapes: B = batch size; every tensor argument is [B].
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from .groups import check_rewards, make_groups, validate_inputs, _as_tensor

__all__ = ["ifpo_weights", "ifpo_stats", "ifpo_metrics", "check_ifpo_options", "FREQ_SCOPES", "APPLY_TO", "WEIGHT_HIST_BINS"]

FREQ_SCOPES = ("group", "batch", "ema")
APPLY_TO = ("all", "positive_only")
EMA_KEY = "p_ema"


def check_ifpo_options(
    *,
    freq_scope: str,
    w_min: float,
    w_max: float,
    apply_to: str = "all",
    ema_momentum: float = 0.9,
    state: Optional[dict] = None,
) -> None:
    """Raise ValueError (naming the option) for invalid IFPO options."""
    if freq_scope not in FREQ_SCOPES:
        raise ValueError(f"ifpo: unknown freq_scope={freq_scope!r}; expected one of {FREQ_SCOPES}")
    if apply_to not in APPLY_TO:
        raise ValueError(f"ifpo: unknown apply_to={apply_to!r}; expected one of {APPLY_TO}")
    for name, v in (("w_min", w_min), ("w_max", w_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"ifpo: {name} must be a number, got {v!r}")
    if w_min > w_max:
        raise ValueError(f"ifpo: w_min={w_min} > w_max={w_max}")
    if not (0.0 <= w_min <= 1.0 <= w_max):
        raise ValueError(
            f"ifpo: need 0 <= w_min <= 1 <= w_max (weight 1 must stay reachable), got w_min={w_min}, w_max={w_max}"
        )
    if freq_scope == "ema":
        if isinstance(ema_momentum, bool) or not isinstance(ema_momentum, (int, float)) or not (
            0.0 <= ema_momentum < 1.0
        ):
            raise ValueError(f"ifpo: ema_momentum must be in [0, 1), got {ema_momentum!r}")
        if not isinstance(state, dict):
            raise ValueError(
                "ifpo: freq_scope='ema' needs option `state` (a dict the caller keeps across steps), "
                f"got {type(state).__name__}"
            )
        if EMA_KEY in state:
            p = state[EMA_KEY]
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p <= 1.0):
                raise ValueError(f"ifpo: state[{EMA_KEY!r}] must be a rate in [0, 1], got {p!r}")


def _rate_weights(p: float, modes: torch.Tensor, w_min: float, w_max: float) -> torch.Tensor:
    """[B] weights from a consultation rate p: 1/(2p) for consult, 1/(2(1-p)) for direct, clipped."""
    if p <= 0.0 or p >= 1.0:
        return torch.ones(modes.shape, dtype=torch.float64, device=modes.device)
    w_c = min(max(1.0 / (2.0 * p), w_min), w_max)
    w_d = min(max(1.0 / (2.0 * (1.0 - p)), w_min), w_max)
    return torch.where(
        modes,
        torch.tensor(w_c, dtype=torch.float64, device=modes.device),
        torch.tensor(w_d, dtype=torch.float64, device=modes.device),
    )


def ifpo_weights(
    group_ids: Any,
    modes: Any,
    *,
    freq_scope: str = "group",
    w_min: float = 0.25,
    w_max: float = 4.0,
    ema_momentum: float = 0.9,
    state: Optional[dict] = None,
    update_state: bool = False,
    **_ignored_estimator_options: Any,
) -> torch.Tensor:
    """Per-sample IFPO weights [B] float64 (see module docstring for the formula).

    group_ids: [B] int, samples of one prompt share an id (any order)
    modes:     [B] bool or 0/1, True = consulted
    state:     dict, required for freq_scope="ema"; ``state["p_ema"]`` holds the moving average
    update_state: ema only. True (what the ``ifpo`` estimator passes): mix this batch into
        ``state["p_ema"]`` and store it. False (default): read-only, use ``state["p_ema"]`` as is
        (or this batch's rate when absent), so calling this after the estimator for logging
        recomputes the same weights without a second EMA update.

    Other keyword options of the ``ifpo`` estimator (norm_std, eps, apply_to) are accepted and
    ignored so the same option dict can be passed to both.
    """
    unknown = set(_ignored_estimator_options) - {"norm_std", "eps", "apply_to"}
    if unknown:
        raise TypeError(f"ifpo_weights: unexpected option(s) {sorted(unknown)}")
    check_ifpo_options(
        freq_scope=freq_scope,
        w_min=w_min,
        w_max=w_max,
        apply_to=_ignored_estimator_options.get("apply_to", "all"),
        ema_momentum=ema_momentum,
        state=state,
    )
    g = _as_tensor(group_ids, "group_ids")
    if g.numel() == 0:
        raise ValueError("`group_ids` is empty (B=0)")
    # reuse the estimator's validation (rewards stand-in gives the length/device)
    _, g, m = validate_inputs(torch.zeros(g.numel(), dtype=torch.float64, device=g.device), g, modes)
    if m is None:
        raise ValueError("ifpo needs `modes` ([B] bool, True = consulted the rule tool); got None")

    if freq_scope == "group":
        grp = make_groups(g)
        mf = m.to(torch.float64)
        n_consult = grp.sum(mf)[grp.inverse]  # [B]
        size = grp.sizes().to(torch.float64)  # [B] = G of the sample's group
        n_direct = size - n_consult
        k = (n_consult > 0).to(torch.float64) + (n_direct > 0).to(torch.float64)  # [B] in {1, 2}
        n_own = torch.where(m, n_consult, n_direct)  # >= 1: the sample itself has its own mode
        w = (size / (k * n_own)).clamp(min=w_min, max=w_max)
        return torch.where(k == 1, torch.ones_like(w), w)  # K=1: exactly 1, whatever the clip

    p_batch = float(m.to(torch.float64).mean())
    if freq_scope == "batch":
        return _rate_weights(p_batch, m, w_min, w_max)

    # ema
    assert state is not None
    prev = state.get(EMA_KEY)
    if update_state:
        p = p_batch if prev is None else ema_momentum * float(prev) + (1.0 - ema_momentum) * p_batch
        state[EMA_KEY] = p
        state["ema_steps"] = int(state.get("ema_steps", 0)) + 1
    else:
        p = p_batch if prev is None else float(prev)
    return _rate_weights(p, m, w_min, w_max)


# fixed histogram bins for logged weights: (key, low inclusive, high exclusive); "eq_1" = |w-1|<=1e-9
WEIGHT_HIST_BINS = (
    ("lt_0.5", float("-inf"), 0.5),
    ("0.5_1", 0.5, 1.0),
    ("eq_1", None, None),
    ("1_2", 1.0, 2.0),
    ("ge_2", 2.0, float("inf")),
)


def ifpo_stats(
    rewards: Any,
    group_ids: Any,
    modes: Any,
    prompt_types: Optional[list[str]] = None,
    weights: Any = None,
) -> dict[str, float]:
    """Logging stats for IFPO / rule consultation (plain floats).

    rewards [B], group_ids [B], modes [B] (True = consulted), prompt_types: list of B strings or
    None, weights: [B] IFPO weights or None. Keys:

    - ``ifpo/consult_rate``, ``ifpo/consult_rate/<prompt_type>`` (per type present)
    - ``ifpo/reward_consult``, ``ifpo/reward_direct`` (mean reward per mode; absent mode skipped)
    - ``ifpo/groups_both_modes`` (share of groups with K = 2), ``ifpo/n_groups``
    - with weights: ``ifpo/weight_mean|min|max`` and ``ifpo/weight_hist/<bin>`` counts, bins
      ``lt_0.5``, ``0.5_1``, ``eq_1`` (|w-1| <= 1e-9), ``1_2`` (excl. 1), ``ge_2``
    """
    r = check_rewards(rewards)
    n = r.numel()
    _, g, m = validate_inputs(r, group_ids, modes)
    if m is None:
        raise ValueError("ifpo_stats needs `modes` ([B] bool, True = consulted); got None")
    mf = m.to(torch.float64)
    out: dict[str, float] = {"ifpo/consult_rate": float(mf.mean())}

    if prompt_types is not None:
        if isinstance(prompt_types, str) or len(prompt_types) != n:
            got = "a string" if isinstance(prompt_types, str) else f"length {len(prompt_types)}"
            raise ValueError(f"`prompt_types` must be a list of {n} strings (one per sample), got {got}")
        by_type: dict[str, list[float]] = {}
        for t, mi in zip(prompt_types, m.tolist()):
            by_type.setdefault(str(t), []).append(float(mi))
        for t, vals in sorted(by_type.items()):
            out[f"ifpo/consult_rate/{t}"] = sum(vals) / len(vals)

    if bool(m.any()):
        out["ifpo/reward_consult"] = float(r[m].mean())
    if bool((~m).any()):
        out["ifpo/reward_direct"] = float(r[~m].mean())

    grp = make_groups(g)
    out["ifpo/groups_both_modes"] = grp.both_modes_share(m)
    out["ifpo/n_groups"] = float(grp.n_groups)

    if weights is not None:
        w = _as_tensor(weights, "weights", r.device).to(torch.float64)
        if w.numel() != n:
            raise ValueError(f"`weights` has length {w.numel()} but `rewards` has length {n}")
        if not bool(torch.isfinite(w).all()):
            raise ValueError("`weights` contains NaN/inf")
        out["ifpo/weight_mean"] = float(w.mean())
        out["ifpo/weight_min"] = float(w.min())
        out["ifpo/weight_max"] = float(w.max())
        is_one = (w - 1.0).abs() <= 1e-9
        for key, lo, hi in WEIGHT_HIST_BINS:
            sel = is_one if lo is None else (w >= lo) & (w < hi) & ~is_one
            out[f"ifpo/weight_hist/{key}"] = float(sel.sum())
    return out


def ifpo_metrics(rewards: Any, group_ids: Any, modes: Any, advantages: Any, *, options: dict,
                 state: Optional[dict] = None, prompt_types: Optional[list[str]] = None) -> dict[str, float]:
    """The ``ifpo`` estimator's metrics hook: weight stats (``ifpo/weight_mean|min|max``, ``ifpo/weight_hist/*``)
    of the weights this step used (read-only: the estimator already updated the EMA), and ``ifpo/p_ema``
    with freq_scope="ema"."""
    opts = {k: v for k, v in options.items() if k not in ("norm_std", "eps")}
    w = ifpo_weights(group_ids, modes, state=state, **opts)
    stats = ifpo_stats(rewards, group_ids, modes, prompt_types, weights=w)
    out = {k: v for k, v in stats.items() if k.startswith("ifpo/weight")}
    if state is not None and EMA_KEY in state:
        out["ifpo/p_ema"] = float(state[EMA_KEY])
    return out
