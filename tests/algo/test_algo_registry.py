"""Registry: decorators, lazy 'module:function' paths, import_plugins, unknown names."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ascl_ray.algo as algo
from ascl_ray.algo.advantages import ADVANTAGE_ESTIMATORS
from ascl_ray.algo.registry import Registry, UnknownNameError, import_plugins

HERE = Path(__file__).resolve().parent
PLUGIN = "ascl_algo_test_plugin"


@pytest.fixture()
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    yield


def test_public_api_exports():
    for name in [
        "get_advantage_estimator", "register_advantage_estimator", "get_policy_loss", "register_policy_loss",
        "agg_loss", "kl_estimate", "tis_weights", "mismatch_metrics", "ifpo_weights", "ifpo_stats",
        "filter_uniform_groups", "import_plugins", "list_advantage_estimators", "list_policy_losses",
    ]:
        assert callable(getattr(algo, name)), name
    assert {"grpo", "rloo", "reinforce_pp_baseline", "ifpo"} <= set(algo.list_advantage_estimators())
    assert {"ppo_clip", "dual_clip", "reinforce"} <= set(algo.list_policy_losses())


def test_decorator_registration_and_lookup():
    @algo.register_advantage_estimator("test_local_zero")
    def zero(rewards, group_ids, modes=None):
        return torch.zeros(len(rewards))

    try:
        assert "test_local_zero" in algo.list_advantage_estimators()
        est = algo.get_advantage_estimator("test_local_zero")
        assert torch.equal(est(torch.tensor([1.0, 2.0]), torch.tensor([0, 0])), torch.zeros(2))
        # a different function under the same name is refused, unless overwrite=True
        with pytest.raises(ValueError, match="already registered"):
            algo.register_advantage_estimator("test_local_zero")(lambda r, g, m=None: r)
        algo.register_advantage_estimator("test_local_zero", overwrite=True)(lambda r, g, m=None: torch.ones(len(r)))
        assert torch.equal(algo.get_advantage_estimator("test_local_zero")(torch.tensor([3.0]), [1]), torch.ones(1))
    finally:
        ADVANTAGE_ESTIMATORS.unregister("test_local_zero")
    assert "test_local_zero" not in algo.list_advantage_estimators()


def test_user_policy_loss_via_decorator():
    @algo.register_policy_loss("test_local_loss")
    def loss(logprobs, old_logprobs, advantages, loss_mask, *, agg="token-mean"):
        return algo.agg_loss(-logprobs, loss_mask, agg), {}

    try:
        lp = torch.tensor([[-1.0, -3.0]])
        out, _ = algo.get_policy_loss("test_local_loss")(lp, lp, torch.ones(1), torch.tensor([[1, 0]]))
        assert out.item() == 1.0
    finally:
        algo.losses.POLICY_LOSSES.unregister("test_local_loss")


def test_dotted_path_estimator_and_loss(plugin_path):
    est = algo.get_advantage_estimator(f"{PLUGIN}:centered_times_two")
    r, g = torch.tensor([1.0, 0.0, 5.0, 3.0]), torch.tensor([9, 9, 2, 2])
    assert torch.allclose(est(r, g), torch.tensor([1.0, -1.0, 2.0, -2.0]))
    assert torch.allclose(est(r, g, scale=1.0), torch.tensor([0.5, -0.5, 1.0, -1.0]))
    # undecorated function: only reachable via its path
    est2 = algo.get_advantage_estimator(f"{PLUGIN}:undecorated_batch_centered")
    assert torch.allclose(est2(r, g), r - r.mean())
    loss = algo.get_policy_loss(f"{PLUGIN}:neg_logprob_loss")
    val, metrics = loss(torch.tensor([[-2.0, -4.0]]), torch.zeros(1, 2), torch.zeros(1), torch.tensor([[1, 1]]))
    assert val.item() == 3.0 and metrics == {"plugin": 1.0}


def test_import_plugins_runs_decorators(plugin_path):
    mods = import_plugins([PLUGIN])
    assert mods[0].__name__ == PLUGIN
    assert "test_plugin_centered" in algo.list_advantage_estimators()
    assert "test_plugin_neg_logprob" in algo.list_policy_losses()
    assert import_plugins(PLUGIN)[0] is mods[0]  # a single string is one module
    assert import_plugins(None) == [] and import_plugins([]) == []


def test_lazy_resolution_in_a_fresh_process():
    """What a remote actor sees: it never ran the decorator, but resolves the dotted path."""
    code = textwrap.dedent(f"""
        import sys, torch, ascl_ray.algo as algo
        heavy = [m for m in sys.modules if m.split('.')[0] in ('ray', 'vllm', 'deepspeed')]
        assert not heavy, heavy  # the algo core imports neither Ray nor vLLM nor DeepSpeed
        assert "test_plugin_centered" not in algo.list_advantage_estimators()
        try:
            algo.get_advantage_estimator("test_plugin_centered")
        except KeyError as e:
            assert "grpo" in str(e)
        else:
            raise SystemExit("expected KeyError")
        est = algo.get_advantage_estimator("{PLUGIN}:centered_times_two")
        print(est(torch.tensor([1.0, 0.0]), torch.tensor([4, 4])).tolist())
        # importing via the path ran the decorators, so the short name now works too
        print("test_plugin_centered" in algo.list_advantage_estimators())
        algo.import_plugins(["{PLUGIN}"])
        print(algo.get_policy_loss("test_plugin_neg_logprob").__name__)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:3] == ["[1.0, -1.0]", "True", "neg_logprob_loss"]


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("no_such_estimator", r"unknown advantage estimator 'no_such_estimator'.*grpo.*ifpo"),
        ("no_such_module_xyz:f", r"could not import.*no_such_module_xyz.*registered names"),
        (f"{PLUGIN}:missing_fn", r"could not import.*missing_fn"),
        ("nocolon:", r"could not import"),
    ],
)
def test_unknown_names(plugin_path, name, pattern):
    with pytest.raises(UnknownNameError, match=pattern) as exc:
        algo.get_advantage_estimator(name)
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, ValueError)
    with pytest.raises(KeyError):
        algo.get_policy_loss(name)


def test_unknown_loss_lists_names():
    with pytest.raises(ValueError, match=r"unknown policy loss 'ppo'.*dual_clip.*ppo_clip.*reinforce"):
        algo.get_policy_loss("ppo")


def test_non_callable_dotted_path(plugin_path):
    with pytest.raises(TypeError, match="non-callable"):
        algo.get_advantage_estimator(f"{PLUGIN}:NOT_CALLABLE")


def test_registry_rejects_bad_names():
    reg = Registry("thing")
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("")
    with pytest.raises(ValueError, match="':'"):
        reg.register("a:b")
    with pytest.raises(TypeError, match="not callable"):
        reg.register("x", 3)
    with pytest.raises(TypeError, match="string or a callable"):
        reg.get(3)
    f = reg.register("f", len)
    assert reg.get("f") is f is len and reg.get(len) is len and "f" in reg


def test_import_plugins_missing_module():
    with pytest.raises(ImportError, match="no_such_plugin_mod_123"):
        import_plugins(["no_such_plugin_mod_123"])
    with pytest.raises(ValueError, match="non-empty"):
        import_plugins([""])


def test_wrapper_checks_user_estimator_output():
    @algo.register_advantage_estimator("test_bad_nan")
    def bad_nan(rewards, group_ids, modes=None):
        return torch.full((len(rewards),), float("nan"))

    @algo.register_advantage_estimator("test_bad_shape")
    def bad_shape(rewards, group_ids, modes=None):
        return torch.zeros(len(rewards) + 1)

    try:
        with pytest.raises(ValueError, match="test_bad_nan.*NaN"):
            algo.get_advantage_estimator("test_bad_nan")(torch.ones(3), [0, 0, 1])
        with pytest.raises(ValueError, match=r"test_bad_shape.*shape \(4,\)"):
            algo.get_advantage_estimator("test_bad_shape")(torch.ones(3), [0, 0, 1])
        # inputs are validated before a user estimator runs
        with pytest.raises(ValueError, match="rewards"):
            algo.get_advantage_estimator("test_bad_shape")(torch.tensor([1.0, float("nan")]), [0, 0])
    finally:
        ADVANTAGE_ESTIMATORS.unregister("test_bad_nan")
        ADVANTAGE_ESTIMATORS.unregister("test_bad_shape")
