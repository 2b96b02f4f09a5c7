"""Pure algorithm core of ascl-ray: advantage estimators (GRPO, RLOO, REINFORCE++-baseline, IFPO),
policy losses (PPO clip, dual clip, REINFORCE), KL estimators and rollout/train mismatch correction.

Only torch and the standard library are imported here (no Ray, vLLM or DeepSpeed), so everything
runs and is tested on CPU and can be called from any actor.
"""

from .advantages import (
    filter_uniform_groups,
    get_advantage_estimator,
    list_advantage_estimators,
    register_advantage_estimator,
)
from .estimate import AdvantageOutput, estimate, groups_both_modes
from .correction import mismatch_metrics, tis_weights
from .ifpo import ifpo_stats, ifpo_weights
from .kl import kl_estimate, kl_loss, kl_reward_penalty
from .losses import agg_loss, get_policy_loss, list_policy_losses, register_policy_loss
from ascl_ray.registry import UnknownNameError, import_plugins

__all__ = [
    "AdvantageOutput",
    "estimate",
    "groups_both_modes",
    "get_advantage_estimator",
    "register_advantage_estimator",
    "list_advantage_estimators",
    "get_policy_loss",
    "register_policy_loss",
    "list_policy_losses",
    "agg_loss",
    "kl_estimate",
    "kl_loss",
    "kl_reward_penalty",
    "tis_weights",
    "mismatch_metrics",
    "ifpo_weights",
    "ifpo_stats",
    "filter_uniform_groups",
    "import_plugins",
    "UnknownNameError",
]
