"""A tiny user plugin used by the registry tests (imported by name or by 'module:function' path).

Importing it registers ``test_plugin_centered`` (estimator) and ``test_plugin_neg_logprob`` (loss).
"""

import torch

from ascl_ray.algo import agg_loss, register_advantage_estimator, register_policy_loss
from ascl_ray.algo.groups import make_groups, validate_inputs


@register_advantage_estimator("test_plugin_centered")
def centered_times_two(rewards, group_ids, modes=None, *, scale=2.0):
    """scale * (r - group mean)."""
    r, g, _ = validate_inputs(rewards, group_ids, modes)
    return (scale * make_groups(g).centered(r)).float()


def undecorated_batch_centered(rewards, group_ids, modes=None):
    """r - batch mean; only reachable through the dotted path."""
    r = torch.as_tensor(rewards, dtype=torch.float64)
    return (r - r.mean()).float()


@register_policy_loss("test_plugin_neg_logprob")
def neg_logprob_loss(logprobs, old_logprobs, advantages, loss_mask, *, agg="token-mean"):
    """-logprobs aggregated (ignores advantages)."""
    m = loss_mask.bool()
    per_token = torch.where(m, -logprobs, torch.zeros_like(logprobs))
    return agg_loss(per_token, m, agg), {"plugin": 1.0}


NOT_CALLABLE = 42
