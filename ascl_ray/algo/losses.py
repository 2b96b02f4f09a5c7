"""Token-level policy-gradient losses and masked aggregation.

Every loss has the signature::

    f(logprobs, old_logprobs, advantages, loss_mask, *, agg="token-mean", is_weights=None,
      agg_denom=None, **opts) -> (loss: scalar tensor, metrics: dict[str, float])

    logprobs:     [B, T] log pi_theta(token), carries the gradient
    old_logprobs: [B, T] log-probs of the behaviour policy (detached inside)
    advantages:   [B] (broadcast over tokens) or [B, T] (detached inside)
    loss_mask:    [B, T] bool/0-1, True on tokens that are trained (model tokens)
    is_weights:   optional [B, T] truncated importance-sampling weights (detached inside),
                  multiplied into the per-token loss (see ``correction.tis_weights``)
    agg_denom:    optional normaliser override for ``agg_loss`` (global token / sequence count
                  when a batch is split into micro-batches)

Masking is exact: masked tokens are replaced by constants BEFORE any arithmetic (torch.where), so
they contribute nothing to the loss or the gradient even when their log-probs are huge, inf or NaN.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ascl_ray.registry import Registry

__all__ = [
    "POLICY_LOSSES",
    "AGG_MODES",
    "register_policy_loss",
    "get_policy_loss",
    "list_policy_losses",
    "agg_loss",
    "ppo_clip_loss",
    "dual_clip_loss",
    "reinforce_loss",
    "LOG_RATIO_CLAMP",
]

POLICY_LOSSES = Registry("policy loss", point="policy_loss")
AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")
# log(pi/pi_old) is clamped to [-20, 20] before exp (as verl does) so that ratios stay finite
LOG_RATIO_CLAMP = 20.0


def register_policy_loss(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator: register ``f(logprobs, old_logprobs, advantages, loss_mask, *, agg, **opts)``."""
    return POLICY_LOSSES.register(name, overwrite=overwrite)


def get_policy_loss(name: str | Callable) -> Callable:
    """Return the loss for a registered name or a ``"module:function"`` path."""
    return POLICY_LOSSES.get(name)


def list_policy_losses() -> list[str]:
    return POLICY_LOSSES.names()


# ---------------------------------------------------------------------------- helpers
def as_bool_mask(loss_mask: Any, shape: Optional[torch.Size] = None, name: str = "loss_mask") -> torch.Tensor:
    """Return ``loss_mask`` as a bool tensor; values must be 0/1; optionally check its shape."""
    if not isinstance(loss_mask, torch.Tensor):
        raise TypeError(f"`{name}` must be a tensor, got {type(loss_mask).__name__}")
    if shape is not None and loss_mask.shape != shape:
        raise ValueError(f"`{name}` has shape {tuple(loss_mask.shape)}, expected {tuple(shape)} (same as `logprobs`)")
    if loss_mask.dtype == torch.bool:
        return loss_mask
    m = loss_mask.detach()
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"`{name}` must contain only 0/1 (or bool) values")
    return m != 0


def masked_fill(x: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    """x where mask else ``value``; the gradient to x at masked positions is exactly 0."""
    return torch.where(mask, x, torch.full_like(x, value))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Plain-float mean of x over mask (0.0 when the mask is empty), for metrics."""
    n = int(mask.sum())
    return float(masked_fill(x.detach(), mask, 0.0).sum() / n) if n else 0.0


def agg_loss(
    per_token: torch.Tensor, mask: Any, mode: str = "token-mean", denom: Optional[float] = None
) -> torch.Tensor:
    """Aggregate a per-token loss [B, T] over ``mask`` [B, T] into a scalar.

    token-mean:          sum of masked tokens / number of masked tokens
    seq-mean-token-sum:  per sequence sum over its masked tokens, then mean over sequences
    seq-mean-token-mean: per sequence mean over its masked tokens, then mean over sequences
    Sequences without any masked token are excluded from the sequence means. An empty mask gives
    0 (connected to the graph, zero gradient), never NaN. ``denom`` overrides the final divisor
    (token count for token-mean, sequence count for the seq modes), e.g. a global count across
    micro-batches.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown agg mode {mode!r}; expected one of {AGG_MODES}")
    if per_token.dim() != 2:
        raise ValueError(f"`per_token` must be [B, T], got shape {tuple(per_token.shape)}")
    m = as_bool_mask(mask, per_token.shape, name="mask")
    if denom is not None and (isinstance(denom, bool) or not math.isfinite(denom) or denom <= 0):
        raise ValueError(f"`denom` must be a finite number > 0, got {denom!r}")
    x = masked_fill(per_token, m, 0.0)
    if mode == "token-mean":
        n = float(m.sum()) if denom is None else float(denom)
        return x.sum() / max(n, 1.0)
    tok_per_seq = m.sum(dim=-1).to(x.dtype)  # [B]
    seq = x.sum(dim=-1)  # [B]
    if mode == "seq-mean-token-mean":
        seq = seq / tok_per_seq.clamp(min=1.0)
    n_seq = float((tok_per_seq > 0).sum()) if denom is None else float(denom)
    return seq.sum() / max(n_seq, 1.0)


def _prepare(logprobs, old_logprobs, advantages, loss_mask, is_weights):
    """Validate shapes; return masked-safe (lp, old, adv [B,T], mask bool, isw or None)."""
    if not isinstance(logprobs, torch.Tensor) or logprobs.dim() != 2:
        shape = tuple(logprobs.shape) if isinstance(logprobs, torch.Tensor) else type(logprobs).__name__
        raise ValueError(f"`logprobs` must be a [B, T] tensor, got {shape}")
    shape = logprobs.shape
    if not isinstance(old_logprobs, torch.Tensor) or old_logprobs.shape != shape:
        got = tuple(old_logprobs.shape) if isinstance(old_logprobs, torch.Tensor) else type(old_logprobs).__name__
        raise ValueError(f"`old_logprobs` has shape {got}, expected {tuple(shape)} (same as `logprobs`)")
    m = as_bool_mask(loss_mask, shape)
    adv = torch.as_tensor(advantages, device=logprobs.device).detach()
    if adv.dim() == 1 and adv.shape[0] == shape[0]:
        adv = adv[:, None].expand(shape)
    elif adv.shape != shape:
        raise ValueError(f"`advantages` has shape {tuple(adv.shape)}, expected [B]=({shape[0]},) or {tuple(shape)}")
    adv = masked_fill(adv.to(logprobs.dtype), m, 0.0)
    lp = masked_fill(logprobs, m, 0.0)
    old = masked_fill(old_logprobs.detach().to(logprobs.dtype), m, 0.0)
    isw = None
    if is_weights is not None:
        if not isinstance(is_weights, torch.Tensor) or is_weights.shape != shape:
            got = tuple(is_weights.shape) if isinstance(is_weights, torch.Tensor) else type(is_weights).__name__
            raise ValueError(f"`is_weights` has shape {got}, expected {tuple(shape)}")
        isw = masked_fill(is_weights.detach().to(logprobs.dtype), m, 1.0)
    return lp, old, adv, m, isw


def _ratio(lp: torch.Tensor, old: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_ratio = torch.clamp(lp - old, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(log_ratio), log_ratio


def _finish(per_token, m, isw, agg, agg_denom, metrics):
    if isw is not None:
        per_token = per_token * isw
        metrics["is_weight_mean"] = masked_mean(isw, m)
    loss = agg_loss(per_token, m, agg, denom=agg_denom)
    metrics["pg_loss"] = float(loss.detach())
    metrics["n_tokens"] = float(m.sum())
    return loss, metrics


def _check_clip(name: str, v: Any, low: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
        raise ValueError(f"option {name} must be a finite number >= {low}, got {v!r}")
    return float(v)


def _ppo_terms(lp, old, adv, m, clip_low, clip_high):
    ratio, log_ratio = _ratio(lp, old)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = torch.maximum(pg1, pg2)
    metrics = {
        "clipfrac": masked_mean((pg2 > pg1).to(lp.dtype), m),
        "ratio_mean": masked_mean(ratio, m),
        "ratio_max": float(masked_fill(ratio.detach(), m, float("-inf")).max()) if bool(m.any()) else 0.0,
        "approx_kl": masked_mean(-log_ratio, m),  # k1 estimate of KL(pi_old || pi_theta)
    }
    return clipped, metrics


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    logprobs, old_logprobs, advantages, loss_mask, *, agg: str = "token-mean", clip_low: float = 0.2,
    clip_high: float = 0.2, is_weights=None, agg_denom: Optional[float] = None,
):
    """PPO clipped surrogate, per token: max(-A*r, -A*clip(r, 1-clip_low, 1+clip_high)),
    r = exp(logprobs - old_logprobs). clip_high > clip_low is DAPO's clip-higher.
    Metrics: pg_loss, clipfrac (share of masked tokens where the clipped term is active), ratio_mean,
    ratio_max, approx_kl, n_tokens (+ is_weight_mean)."""
    clip_low = _check_clip("clip_low", clip_low)
    clip_high = _check_clip("clip_high", clip_high)
    if clip_low >= 1.0:
        raise ValueError(f"option clip_low must be < 1 (ratio lower bound 1-clip_low > 0), got {clip_low}")
    lp, old, adv, m, isw = _prepare(logprobs, old_logprobs, advantages, loss_mask, is_weights)
    per_token, metrics = _ppo_terms(lp, old, adv, m, clip_low, clip_high)
    return _finish(per_token, m, isw, agg, agg_denom, metrics)


@register_policy_loss("dual_clip")
def dual_clip_loss(
    logprobs, old_logprobs, advantages, loss_mask, *, agg: str = "token-mean", clip_low: float = 0.2,
    clip_high: float = 0.2, clip_c: float = 3.0, is_weights=None, agg_denom: Optional[float] = None,
):
    """Dual-clip PPO (Ye et al. 2020, as in verl): the PPO-clip term, and for A < 0 additionally
    bounded above by -A*clip_c: per token  A >= 0: max(-A r, -A clip(r))
                                          A <  0: min(max(-A r, -A clip(r)), -A clip_c)
    so a very large ratio on a negative-advantage token cannot blow up the loss (its gradient is 0).
    Extra metric: clipfrac_lower (share of masked tokens where the clip_c bound is active)."""
    clip_low = _check_clip("clip_low", clip_low)
    clip_high = _check_clip("clip_high", clip_high)
    clip_c = _check_clip("clip_c", clip_c)
    if clip_c <= 1.0:
        raise ValueError(f"option clip_c must be > 1, got {clip_c}")
    if clip_low >= 1.0:
        raise ValueError(f"option clip_low must be < 1, got {clip_low}")
    lp, old, adv, m, isw = _prepare(logprobs, old_logprobs, advantages, loss_mask, is_weights)
    clipped, metrics = _ppo_terms(lp, old, adv, m, clip_low, clip_high)
    pg3 = -adv * clip_c
    lower = torch.minimum(clipped, pg3)
    per_token = torch.where(adv < 0, lower, clipped)
    metrics["clipfrac_lower"] = masked_mean(((adv < 0) & (pg3 < clipped)).to(lp.dtype), m)
    return _finish(per_token, m, isw, agg, agg_denom, metrics)


@register_policy_loss("reinforce")
def reinforce_loss(
    logprobs, old_logprobs, advantages, loss_mask, *, agg: str = "token-mean", is_weights=None,
    agg_denom: Optional[float] = None,
):
    """REINFORCE: per token -A * logprobs (no ratio, no clip; ``old_logprobs`` only checked for shape).
    Use ``is_weights`` for off-policy correction."""
    lp, old, adv, m, isw = _prepare(logprobs, old_logprobs, advantages, loss_mask, is_weights)
    return _finish(-adv * lp, m, isw, agg, agg_denom, {})
