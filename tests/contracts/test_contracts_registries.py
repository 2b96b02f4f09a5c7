"""The registries of policy losses, judges and reward rules: the overwrite rule, plug-in prompt kinds end to end,
pure built-in modules, and config validation reading its names from the registries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ascl_ray.registry import BUILTIN_MODULES, get_registry

POINTS = ("policy_loss", "judge", "reward_rule")


def _other(*args, **kwargs):  # a different object than any registered entry
    return 0.0, {}


@pytest.mark.parametrize("point", POINTS)
def test_taken_name_refuses_a_different_object(point):
    reg = get_registry(point)
    for name in reg.names():
        old = reg.get(name)
        with pytest.raises(ValueError, match="already registered"):
            reg.register(name, _other)
        assert reg.get(name) is old
        assert reg.register(name, old) is old  # the same object again is fine
        assert reg.get(name) is old


def test_public_register_helpers_default_to_no_overwrite():
    from ascl_ray.algo.losses import register_policy_loss
    from ascl_ray.reward.judge_base import register_judge
    from ascl_ray.reward.rules import register_reward_rule

    with pytest.raises(ValueError, match="already registered"):
        register_policy_loss("ppo_clip")(_other)
    with pytest.raises(ValueError, match="already registered"):
        register_judge("refusal", _other)
    with pytest.raises(ValueError, match="already registered"):
        register_reward_rule("harmful", _other)
    assert get_registry("reward_rule").get("harmful") is not _other


def test_plugin_prompt_kind_end_to_end():
    from ascl_ray.batch import PromptRow, prompt_types
    from ascl_ray.reward.config import RewardPoolConfig
    from ascl_ray.reward.rules import REWARD_RULES, RuleInput, register_reward_rule
    from ascl_ray.reward.scoring import score_rollout

    builtins = prompt_types()

    @register_reward_rule("test_short_answer", needs_judge=False)
    def short_answer(inp: RuleInput):
        return (1.0 if len(inp.final_text) <= 10 else 0.0), {"length": len(inp.final_text)}

    try:
        assert prompt_types() == builtins + ("test_short_answer",)  # plug-ins after the built-ins
        PromptRow("p1", "Say hi briefly.", "test_short_answer")
        r, info = score_rollout("test_short_answer", "hi", None, None, malformed_call=False,
                                has_final_answer=True, verdict=None, consulted=True, consult_cost=0.5)
        assert r == 0.5 and info["length"] == 2 and info["base"] == 1.0 and info["gate"] is None
        RewardPoolConfig.from_dict({"judge_by_type": {"test_short_answer": {"name": "refusal"}}})
    finally:
        REWARD_RULES.unregister("test_short_answer")
    assert prompt_types() == builtins
    with pytest.raises(ValueError, match="prompt_type"):
        PromptRow("p1", "Say hi briefly.", "test_short_answer")


def test_eval_prompt_types_are_a_subset_of_the_rules():
    from ascl_ray.batch import prompt_types
    from ascl_ray.eval.metrics import HEADLINE, PROMPT_TYPES

    assert set(PROMPT_TYPES) <= set(prompt_types()) and set(PROMPT_TYPES) == set(HEADLINE)


def test_builtin_modules_of_judges_and_rules_are_pure():
    mods = [m for p in ("judge", "reward_rule") for m in BUILTIN_MODULES[p]]
    code = ("import sys\nfrom ascl_ray.registry import get_registry\n"
            "[get_registry(p) for p in ('judge', 'reward_rule')]\n"
            f"import {', '.join(mods)}\n"
            "from ascl_ray.batch import prompt_types; prompt_types()\n"
            "bad = [m for m in ('ray', 'vllm', 'deepspeed', 'torch') if m in sys.modules]\n"
            "assert not bad, bad\nprint('OK')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------- config


@pytest.fixture(scope="module")
def compose():
    from ascl_ray.cli import compose

    return compose


@pytest.mark.parametrize("name", get_registry("policy_loss").names())
def test_config_accepts_every_policy_loss(compose, name):
    assert compose([f"algorithm.policy_loss={name}"]).algorithm.policy_loss == name


@pytest.mark.parametrize("name", get_registry("judge").names())
def test_config_accepts_every_judge(compose, name):
    cfg = compose([f"reward.judge={name}", "reward.imports=[ascl_ray.reward.testing]"])
    assert cfg.reward.judge == name


@pytest.mark.parametrize("override,key,listed", [
    ("algorithm.name=no_such_estimator", "algorithm.name", "grpo"),
    ("algorithm.policy_loss=no_such_loss", "algorithm.policy_loss", "ppo_clip"),
    ("algorithm.plugins=[no_such_plugin_module]", "algorithm.plugins", "no_such_plugin_module"),
    ("reward.judge=no_such_judge", "reward", "refusal_robust"),
    ("+reward.judge_by_type.math={name: no_such_judge}", "reward", "judge_by_type['math'].name"),
    ("+reward.judge_by_type.chitchat={name: refusal}", "reward", "gray_zone"),
])
def test_config_names_come_from_the_registries(compose, override, key, listed):
    from ascl_ray.config import ConfigError

    with pytest.raises(ConfigError) as e:
        compose([override])
    assert str(e.value).startswith(key + ":") and listed in str(e.value)


def test_config_plugins_are_imported_before_names_are_checked(compose):
    grpo = get_registry("advantage_estimator").get("grpo")
    path = f"{grpo.__module__}:{grpo.__qualname__}"  # a 'module:fn' path is a valid name too
    cfg = compose(["algorithm.plugins=[ascl_ray.reward.testing]", "reward.judge=test_slow", f"algorithm.name={path}"])
    assert cfg.reward.judge == "test_slow" and cfg.algorithm.name == path
