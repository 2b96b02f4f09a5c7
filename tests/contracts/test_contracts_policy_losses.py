"""Contract of every registered policy loss (``ascl_ray/algo/losses.py`` documents the API)::

    f(logprobs [B,T], old_logprobs [B,T], advantages [B] or [B,T], loss_mask [B,T], *, agg, is_weights=None,
      **opts) -> (loss: scalar tensor, metrics: dict[str, float])

The learner calls it as ``f(lp, old_lp, adv, mask, agg=..., is_weights=..., **loss_opts)``; every entry is run
with its default options only.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from ascl_ray.algo.losses import AGG_MODES
from ascl_ray.registry import get_registry

LOSSES = get_registry("policy_loss")
NAMES = LOSSES.names()


def _inputs(B: int = 3, T: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lp = (-torch.rand(B, T, generator=g) * 2.0).requires_grad_(True)
    old = lp.detach() + 0.1 * torch.randn(B, T, generator=g)
    adv = torch.tensor([1.0, -0.5, 0.25])[:B]
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 0] = False
    return lp, old, adv, mask


def _check_output(name, out):
    assert isinstance(out, tuple) and len(out) == 2, f"{name}: must return (loss, metrics)"
    loss, metrics = out
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"{name}: loss must be a scalar tensor"
    assert torch.isfinite(loss), f"{name}: loss {loss} is not finite"
    assert isinstance(metrics, dict), f"{name}: metrics must be a dict"
    for k, v in metrics.items():
        assert isinstance(k, str), f"{name}: metric name {k!r} is not a str"
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{name}: metric {k}={v!r} is not a number"
    return loss, metrics


def test_there_are_losses():
    assert {"ppo_clip", "dual_clip", "reinforce"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_signature_takes_the_learner_call(name):
    params = inspect.signature(LOSSES.get(name)).parameters
    positional = [p for p in params.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    assert len(positional) >= 4, f"{name}: needs (logprobs, old_logprobs, advantages, loss_mask, ...)"
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for kw in ("agg", "is_weights"):
        assert var_kw or kw in params, f"{name}: must take keyword {kw!r} (the learner passes it)"


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("name", NAMES)
def test_scalar_loss_metrics_and_gradient(name, agg):
    lp, old, adv, mask = _inputs()
    loss, _ = _check_output(name, LOSSES.get(name)(lp, old, adv, mask, agg=agg, is_weights=None))
    assert loss.requires_grad, f"{name}: loss must carry the gradient of logprobs"
    loss.backward()
    assert lp.grad is not None and torch.isfinite(lp.grad).all()
    assert torch.all(lp.grad[~mask] == 0), f"{name}: masked tokens must get no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_token_level_advantages_and_is_weights(name):
    lp, old, adv, mask = _inputs()
    adv_bt = adv[:, None].expand_as(lp).clone()  # the learner passes [B, T]
    isw = torch.full_like(lp, 0.5)
    _check_output(name, LOSSES.get(name)(lp, old, adv_bt, mask, agg="token-mean", is_weights=isw))


@pytest.mark.parametrize("name", NAMES)
def test_masked_garbage_and_empty_mask(name):
    """Masked tokens contribute nothing even when non-finite; an all-masked batch gives a finite loss."""
    lp, old, adv, mask = _inputs()
    clean, _ = _check_output(name, LOSSES.get(name)(lp, old, adv, mask, agg="token-mean"))
    lp2 = lp.detach().clone()
    lp2[~mask] = float("nan")
    old2 = old.clone()
    old2[~mask] = float("inf")
    dirty, _ = _check_output(name, LOSSES.get(name)(lp2.requires_grad_(True), old2, adv, mask, agg="token-mean"))
    assert math.isclose(float(dirty.detach()), float(clean.detach()), rel_tol=1e-5, abs_tol=1e-6)
    empty = torch.zeros_like(mask)
    loss, _ = _check_output(name, LOSSES.get(name)(lp, old, adv, empty, agg="token-mean"))
    assert float(loss.detach()) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error(name):
    lp, old, adv, mask = _inputs()
    f = LOSSES.get(name)
    with pytest.raises((ValueError, TypeError)):
        f(lp, old[:, :2], adv, mask, agg="token-mean")  # old_logprobs of another shape
    with pytest.raises((ValueError, TypeError)):
        f(lp, old, adv[:2], mask, agg="token-mean")  # advantages of another batch size
    with pytest.raises((ValueError, TypeError)):
        f(lp, old, adv, mask, agg="token-median")  # unknown aggregation
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(f).parameters.values()):
        with pytest.raises(TypeError):
            f(lp, old, adv, mask, agg="token-mean", no_such_option=1.0)
