"""``learner.zero_stage``: the ZeRO stage changes where the state lives, never the arithmetic (real Ray + real
DeepSpeed over gloo, the tiny model, one learner rank per group, synthetic rollouts, no vLLM).

A ZeRO-3 group and a stage-0 group (the ``cpu_single`` preset) start from the same weights and take the same
two updates: their probe log-probs and exported weights agree. The stage-0 group's full-state checkpoint
restores weights AND optimizer state: after a load, the same update lands on the same weights (with the
optimizer state lost it would not, see tests/e2e/test_learner_checkpoint.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def groups(tiny_model_path, tiny_tokenizer):
    import ray

    from ascl_ray.cli import compose
    from ascl_ray.runtime import make_learners

    base = [f"model.path={tiny_model_path}", "data.prompts_per_iter=2", "rollout.n_samples=4",
            "learner.torch_threads=1"]
    cfg3 = compose(base + ["learner.num_actors=1"])
    cfg0 = compose(base + ["learner=cpu_single", "learner.torch_threads=1"])
    assert (cfg3.learner.zero_stage, cfg0.learner.zero_stage, cfg0.learner.num_actors) == (3, 0, 1)
    ray.init(num_cpus=2, include_dashboard=False, namespace="ascl-test-zero-stage",
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    g3 = make_learners(cfg3, tiny_model_path)
    g0 = make_learners(cfg0, tiny_model_path)
    probes = [tiny_tokenizer.encode(t) for t in ("The rule tool says comply.", "What is 2 + 2? The answer is 4.")]
    yield dict(g3=g3, g0=g0, tok=tiny_tokenizer, probes=probes)
    g0.close()
    g3.close()
    ray.shutdown()


def _weights(group, folder):
    from safetensors.torch import load_file

    group.save_hf(str(folder))
    return load_file(str(folder / "model.safetensors"))


def test_stage0_takes_the_same_updates_as_zero3(groups, tmp_path, rollouts_for_learner, nested_diff):
    g3, g0, tok, probes = groups["g3"], groups["g0"], groups["tok"], groups["probes"]
    lp_start = g3.probe_logprobs(probes)
    assert nested_diff(lp_start, g0.probe_logprobs(probes)) < 1e-6
    for seed in (1, 2):
        s3, s0 = g3.update(rollouts_for_learner(tok, seed)), g0.update(rollouts_for_learner(tok, seed))
        assert abs(s3["train/loss"] - s0["train/loss"]) < 1e-5
        assert abs(s3["train/grad_norm"] - s0["train/grad_norm"]) < 1e-4 * max(1.0, s3["train/grad_norm"])
    lp3, lp0 = g3.probe_logprobs(probes), g0.probe_logprobs(probes)
    assert nested_diff(lp_start, lp3) > 1e-3, "the updates moved nothing: the comparison would prove nothing"
    assert nested_diff(lp3, lp0) < 1e-4
    w3, w0 = _weights(g3, tmp_path / "z3"), _weights(g0, tmp_path / "z0")
    assert sorted(w3) == sorted(w0)
    assert max((w3[k] - w0[k]).abs().max().item() for k in w3) < 1e-5


def test_stage0_checkpoint_restores_weights_and_optimizer(groups, tmp_path, rollouts_for_learner, nested_diff):
    g0, tok, probes = groups["g0"], groups["tok"], groups["probes"]
    g0.update(rollouts_for_learner(tok, 3))
    lp1 = g0.probe_logprobs(probes)
    ckpt = tmp_path / "ckpt"
    g0.save_checkpoint(str(ckpt))
    stats_a = g0.update(rollouts_for_learner(tok, 4))
    lp_a = g0.probe_logprobs(probes)
    assert nested_diff(lp1, lp_a) > 1e-4
    g0.load_checkpoint(str(ckpt))
    assert nested_diff(lp1, g0.probe_logprobs(probes)) < 1e-6
    stats_b = g0.update(rollouts_for_learner(tok, 4))
    assert nested_diff(lp_a, g0.probe_logprobs(probes)) < 1e-5
    assert abs(stats_a["train/grad_norm"] - stats_b["train/grad_norm"]) < 1e-5
