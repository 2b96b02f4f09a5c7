"""Rollout/train mismatch: the engine that sampled the tokens (vLLM, "rollout") and the engine that
trains (DeepSpeed/HF, "learner") compute slightly different log-probs for the same policy weights.

Truncated importance sampling (TIS) corrects the policy gradient for that mismatch. The weight of a
token is the ratio of the policy being trained (as computed by the learner, for the same weights
that sampled) to the sampling policy that actually produced the token (as computed by the rollout
engine), truncated from above:

    w = min(pi_learner(token) / pi_rollout(token), cap) = min(exp(learner - rollout), cap)

Pass the learner's log-probs of the behaviour weights (``old_logprobs`` recomputed by the learner,
not the ones carrying gradient); the weights are detached anyway.
Shapes: all inputs [B, T]; loss_mask bool/0-1, True on model tokens.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .kl import kl_estimate
from .losses import as_bool_mask, masked_fill

__all__ = ["tis_weights", "mismatch_metrics"]


def _prep(learner_logprobs: Any, rollout_logprobs: Any, loss_mask: Any):
    if not isinstance(learner_logprobs, torch.Tensor) or learner_logprobs.dim() != 2:
        raise ValueError("`learner_logprobs` must be a [B, T] tensor")
    shape = learner_logprobs.shape
    if not isinstance(rollout_logprobs, torch.Tensor) or rollout_logprobs.shape != shape:
        got = tuple(rollout_logprobs.shape) if isinstance(rollout_logprobs, torch.Tensor) else type(rollout_logprobs).__name__
        raise ValueError(f"`rollout_logprobs` has shape {got}, expected {tuple(shape)} (same as `learner_logprobs`)")
    m = as_bool_mask(loss_mask, shape)
    learner = masked_fill(learner_logprobs.detach(), m, 0.0)
    rollout = masked_fill(rollout_logprobs.detach().to(learner.dtype), m, 0.0)
    return learner, rollout, m


def tis_weights(learner_logprobs: Any, rollout_logprobs: Any, loss_mask: Any, cap: float = 2.0) -> torch.Tensor:
    """Truncated IS weights [B, T] = min(exp(learner - rollout), cap), detached, 1 where masked.

    Computed as exp(min(learner - rollout, log cap)), so it never overflows.
    """
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap <= 0:
        raise ValueError(f"`cap` must be a finite number > 0, got {cap!r}")
    learner, rollout, m = _prep(learner_logprobs, rollout_logprobs, loss_mask)
    w = torch.exp(torch.clamp(learner - rollout, max=math.log(cap)))
    return masked_fill(w, m, 1.0)


def mismatch_metrics(learner_logprobs: Any, rollout_logprobs: Any, loss_mask: Any) -> dict[str, float]:
    """Plain-float mismatch stats over masked tokens (all 0.0 when the mask is empty):

    mismatch/abs_diff_mean, mismatch/abs_diff_max: |learner - rollout| log-prob difference
    mismatch/k3_kl: mean k3 estimate of KL(pi_rollout || pi_learner) (tokens come from rollout)
    mismatch/n_tokens
    """
    learner, rollout, m = _prep(learner_logprobs, rollout_logprobs, loss_mask)
    n = int(m.sum())
    if n == 0:
        return {"mismatch/abs_diff_mean": 0.0, "mismatch/abs_diff_max": 0.0, "mismatch/k3_kl": 0.0, "mismatch/n_tokens": 0.0}
    diff = (learner - rollout).abs()[m]
    k3 = kl_estimate(rollout, learner, "k3")[m]
    return {
        "mismatch/abs_diff_mean": float(diff.mean()),
        "mismatch/abs_diff_max": float(diff.max()),
        "mismatch/k3_kl": float(k3.mean()),
        "mismatch/n_tokens": float(n),
    }
