"""Contract of every registered advantage estimator (a new one is tested by registering it).

Through ``algo.estimate`` (what the driver calls): advantages [B] finite float, metrics plain floats,
the state dict returned (and the same object passed in), stable under a second call; bad inputs raise
a ValueError naming the argument; a uniform group gets zero advantage.
"""

import math

import pytest
import torch

from ascl_ray import algo
from ascl_ray.registry import get_registry

NAMES = get_registry("advantage_estimator").names()


def batch():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0])
    gids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    modes = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    return rewards, gids, modes


def test_builtins_are_registered():
    assert {"grpo", "rloo", "reinforce_pp_baseline", "ifpo"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_metrics_and_state(name):
    r, g, m = batch()
    state = {}
    out = algo.estimate(name, r, g, m, options={}, state=state, prompt_types=["math"] * len(r))
    assert isinstance(out.advantages, torch.Tensor) and tuple(out.advantages.shape) == (len(r),)
    assert out.advantages.dtype.is_floating_point and bool(torch.isfinite(out.advantages).all())
    assert out.state is state
    assert out.metrics and all(isinstance(k, str) and isinstance(v, float) and math.isfinite(v)
                               for k, v in out.metrics.items())
    assert out.metrics["advantage/abs_mean"] == pytest.approx(float(out.advantages.abs().mean()))
    assert out.metrics["consultation/groups_both_modes"] == pytest.approx(2 / 3)
    # the uniform group (id 1) carries no signal for any group-relative estimator
    assert torch.allclose(out.advantages[4:8], torch.zeros(4), atol=1e-6)
    again = algo.estimate(name, r, g, m, options={}, state=out.state)
    assert tuple(again.advantages.shape) == (len(r),)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad, word", [
    (dict(rewards=torch.tensor([1.0, float("nan")]), group_ids=torch.tensor([0, 0])), "rewards"),
    (dict(rewards=torch.tensor([1.0, 0.0]), group_ids=torch.tensor([0])), "group_ids"),
])
def test_bad_inputs_name_the_argument(name, bad, word):
    with pytest.raises(ValueError, match=word):
        algo.estimate(name, bad["rewards"], bad["group_ids"], torch.tensor([True, False][: len(bad["rewards"])]))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_is_an_error(name):
    r, g, m = batch()
    with pytest.raises((TypeError, ValueError)):
        algo.estimate(name, r, g, m, options={"no_such_option_xyz": 1})


def test_state_in_options_is_refused():
    r, g, m = batch()
    with pytest.raises(ValueError, match="state="):
        algo.estimate("grpo", r, g, m, options={"state": {}})


def test_ifpo_owns_its_state_and_metrics():
    """The driver passes the same state every step; IFPO's EMA lives in it and its metrics come from its hook."""
    r, g, m = batch()
    state = {}
    out = algo.estimate("ifpo", r, g, m, options={"freq_scope": "ema", "ema_momentum": 0.5}, state=state)
    assert state["p_ema"] == pytest.approx(float(m.float().mean())) and state["ema_steps"] == 1
    assert out.metrics["ifpo/p_ema"] == pytest.approx(state["p_ema"])
    assert {"ifpo/weight_mean", "ifpo/weight_min", "ifpo/weight_max"} <= set(out.metrics)
    algo.estimate("ifpo", r, g, ~m, options={"freq_scope": "ema", "ema_momentum": 0.5}, state=state)
    assert state["ema_steps"] == 2 and state["p_ema"] == pytest.approx(0.5)
    # an estimator without a hook logs no ifpo/* keys
    assert not [k for k in algo.estimate("grpo", r, g, m).metrics if k.startswith("ifpo/")]


def test_plugin_estimator_with_state_and_hook():
    calls = []

    def hook(rewards, group_ids, modes, advantages, *, options, state, prompt_types):
        return {"mine/steps": state["n"]}

    @algo.register_advantage_estimator("contract_test_counting", metrics=hook)
    def counting(rewards, group_ids, modes=None, *, scale=1.0, state=None):
        state["n"] = state.get("n", 0) + 1
        calls.append(scale)
        return algo.get_advantage_estimator("grpo")(rewards, group_ids) * scale

    try:
        r, g, m = batch()
        st = {}
        out = algo.estimate("contract_test_counting", r, g, m, options={"scale": 2.0}, state=st)
        out = algo.estimate("contract_test_counting", r, g, m, options={"scale": 2.0}, state=out.state)
        assert st == {"n": 2} and out.metrics["mine/steps"] == 2.0 and calls == [2.0, 2.0]
    finally:
        get_registry("advantage_estimator").unregister("contract_test_counting")
