"""Per-iteration rollout metrics of the RL loop (pure: no Ray, vLLM or DeepSpeed). Consultation first."""

from __future__ import annotations

from ascl_ray.batch import Rollout, prompt_types


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def group_metrics(rollouts: list[Rollout]) -> dict[str, float]:
    """Per-iteration rollout metrics. Consultation first: overall, per prompt type, on needs-rules vs
    no-rules prompts and their difference (``consultation/targeting_gap``); reward and advantage per
    mode (consult / direct) overall and per prompt type; malformed calls as a share of calls."""
    out: dict[str, float] = {}
    n = len(rollouts)
    out["reward/mean"] = _mean([r.reward for r in rollouts])
    out["consultation/rate"] = _mean([r.consulted for r in rollouts])
    for flag, name in ((True, "needs_rules"), (False, "no_rules")):
        sub = [r for r in rollouts if bool(r.prompt.needs_rules) == flag]
        if sub:
            out[f"consultation/{name}"] = _mean([r.consulted for r in sub])
            out[f"reward/{name}"] = _mean([r.reward for r in sub])
    if "consultation/needs_rules" in out and "consultation/no_rules" in out:
        out["consultation/targeting_gap"] = out["consultation/needs_rules"] - out["consultation/no_rules"]
    modes = ((True, "consult"), (False, "direct"))
    for t in prompt_types():
        sub = [r for r in rollouts if r.prompt.prompt_type == t]
        if not sub:
            continue
        out[f"reward/{t}"] = _mean([r.reward for r in sub])
        out[f"consultation/{t}"] = _mean([r.consulted for r in sub])
        for mode, name in modes:
            part = [r for r in sub if r.consulted == mode]
            if part:
                out[f"reward/by_mode/{t}/{name}"] = _mean([r.reward for r in part])
                if all(r.advantage is not None for r in part):
                    out[f"advantage/by_mode/{t}/{name}"] = _mean([r.advantage for r in part])
    for mode, name in modes:
        sub = [r for r in rollouts if r.consulted == mode]
        if sub:
            out[f"reward/by_mode/{name}"] = _mean([r.reward for r in sub])
    calls = sum(r.n_calls for r in rollouts)
    out["rollout/malformed_call_rate"] = sum(r.malformed_call for r in rollouts) / calls if calls else 0.0
    out["rollout/response_tokens"] = _mean([len(r.response_ids) for r in rollouts])
    out["rollout/model_tokens"] = _mean([r.n_model_tokens for r in rollouts])
    out["rollout/tool_calls"] = sum(r.n_calls for r in rollouts) / n
    out["rollout/truncated_rate"] = _mean([r.truncated for r in rollouts])
    out["rollout/malformed_rate"] = _mean([r.malformed_call for r in rollouts])
    out["reward/invalid"] = float(sum(not r.reward_info.get("valid", True) for r in rollouts))
    return out
