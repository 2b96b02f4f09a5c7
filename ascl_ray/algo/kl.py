"""KL estimators between the trained policy and a reference policy, per token.

Tokens are sampled from the current policy pi, so with d = ref_logprobs - logprobs
(= log pi_ref/pi) the Schulman estimators of KL(pi || pi_ref) are

    k1 = logprobs - ref_logprobs = -d           unbiased, high variance, can be negative
    k2 = 0.5 * (logprobs - ref_logprobs)^2      biased, low variance, >= 0
    k3 = exp(d) - d - 1                         unbiased, low variance, >= 0 ("low_var_kl")

k3 clamps d to [-20, 20] before exp and the result to at most 10 (as verl does) for stability.
Shapes: logprobs, ref_logprobs, loss_mask are [B, T]; estimates are [B, T].
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from .losses import agg_loss, as_bool_mask, masked_fill, masked_mean

__all__ = ["KL_KINDS", "kl_estimate", "kl_loss", "kl_reward_penalty"]

KL_KINDS = ("k1", "k2", "k3")
_ALIASES = {"low_var_kl": "k3", "kl": "k1", "mse": "k2"}
K3_LOG_RATIO_CLAMP = 20.0
K3_MAX = 10.0


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate [B, T] (see module docstring). ``kind``: k1 | k2 | k3 (aliases:
    low_var_kl=k3, kl=k1, mse=k2). Not masked: use ``kl_loss`` / ``kl_reward_penalty`` for that."""
    k = _ALIASES.get(kind, kind)
    if k not in KL_KINDS:
        raise ValueError(f"unknown KL `kind` {kind!r}; expected one of {KL_KINDS} (aliases {sorted(_ALIASES)})")
    if not isinstance(logprobs, torch.Tensor) or not isinstance(ref_logprobs, torch.Tensor):
        raise TypeError("`logprobs` and `ref_logprobs` must be tensors")
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"`ref_logprobs` has shape {tuple(ref_logprobs.shape)}, expected {tuple(logprobs.shape)} (same as `logprobs`)"
        )
    ref = ref_logprobs.to(logprobs.dtype)
    if k == "k1":
        return logprobs - ref
    if k == "k2":
        return 0.5 * (logprobs - ref) ** 2
    d = torch.clamp(ref - logprobs, -K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP)
    return torch.clamp(torch.exp(d) - d - 1.0, max=K3_MAX)


def _masked_inputs(logprobs, ref_logprobs, loss_mask):
    if not isinstance(logprobs, torch.Tensor):
        raise TypeError("`logprobs` must be a tensor")
    m = as_bool_mask(loss_mask, logprobs.shape)
    if not isinstance(ref_logprobs, torch.Tensor) or ref_logprobs.shape != logprobs.shape:
        got = tuple(ref_logprobs.shape) if isinstance(ref_logprobs, torch.Tensor) else type(ref_logprobs).__name__
        raise ValueError(f"`ref_logprobs` has shape {got}, expected {tuple(logprobs.shape)}")
    lp = masked_fill(logprobs, m, 0.0)
    ref = masked_fill(ref_logprobs.detach().to(logprobs.dtype), m, 0.0)
    return lp, ref, m


def _check_coef(coef: Any) -> float:
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not math.isfinite(coef) or coef < 0:
        raise ValueError(f"`coef` must be a finite number >= 0, got {coef!r}")
    return float(coef)


def kl_loss(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    loss_mask: Any,
    *,
    kind: str = "k3",
    coef: float = 1.0,
    agg: str = "token-mean",
    agg_denom: Optional[float] = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL as a loss term: coef * agg_loss(kl_estimate(logprobs, ref), loss_mask, agg).

    ``ref_logprobs`` is detached; masked tokens contribute nothing (exact, as in ``agg_loss``).
    Returns (scalar loss, {"kl": masked token mean of the estimate, "kl_loss": the loss value}).
    """
    coef = _check_coef(coef)
    lp, ref, m = _masked_inputs(logprobs, ref_logprobs, loss_mask)
    kl = kl_estimate(lp, ref, kind)
    loss = coef * agg_loss(kl, m, agg, denom=agg_denom)
    return loss, {"kl": masked_mean(kl, m), "kl_loss": float(loss.detach())}


def kl_reward_penalty(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    loss_mask: Any,
    *,
    kind: str = "k1",
    coef: float = 1.0,
) -> torch.Tensor:
    """KL as a reward penalty: [B] = coef * sum over masked tokens of kl_estimate (detached).

    Use as ``reward = reward - penalty``. Sequences with no masked token get 0.
    """
    coef = _check_coef(coef)
    with torch.no_grad():
        lp, ref, m = _masked_inputs(logprobs, ref_logprobs, loss_mask)
        kl = masked_fill(kl_estimate(lp, ref, kind), m, 0.0)
        return coef * kl.sum(dim=-1)
