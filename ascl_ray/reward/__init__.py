"""Reward subsystem of ascl-ray (methods.md section 5).

Public names (imported lazily: ``import ascl_ray.reward`` imports neither ray, vllm nor torch):

    verify_math(response, reference, kind, timeout_s=5.0) -> float         ascl_ray.reward.math
    detect_refusal(texts) -> list[bool]                                    ascl_ray.reward.refusal
    score_rollout(prompt_type, final_text, reference, math_kind, *, ...)  ascl_ray.reward.scoring
    get_judge(name, **options), register_judge(name, factory)              ascl_ray.reward.judges
    binary_metrics(pred, gold) -> dict                                     ascl_ray.reward.judge_check
    RewardPool, RewardPoolConfig (Ray)                                     ascl_ray.reward.pool
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "verify_math": "ascl_ray.reward.math",
    "verify_math_ex": "ascl_ray.reward.math",
    "detect_refusal": "ascl_ray.reward.refusal",
    "score_rollout": "ascl_ray.reward.scoring",
    "get_judge": "ascl_ray.reward.judges",
    "register_judge": "ascl_ray.reward.judges",
    "available_judges": "ascl_ray.reward.judges",
    "JudgeVerdict": "ascl_ray.reward.judges",
    "SafetyJudge": "ascl_ray.reward.judges",
    "binary_metrics": "ascl_ray.reward.judge_check",
    "RewardPool": "ascl_ray.reward.pool",
    "RewardPoolConfig": "ascl_ray.reward.pool",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ascl_ray.reward' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
