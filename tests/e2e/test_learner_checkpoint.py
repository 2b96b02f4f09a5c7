"""Full-state learner checkpoints on real Ray + real DeepSpeed ZeRO-3 (gloo, 2 ranks, the tiny model),
and a learner group that fails fast instead of hanging when a rank dies.

The batches are synthetic ``Rollout`` objects (prompt + response token ids, advantages): no vLLM."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytestmark = pytest.mark.slow


def _new_learner_group(cfg, path):
    """A second learner group while the first lives. Retried once when the DeepSpeed rendezvous port
    was taken between ``_free_port`` probing it and rank 0's TCPStore binding it (EADDRINUSE: a
    race of the learner placement (``ascl_ray/placement.py``), seen about once in 20 runs here; the failed group's placement
    group is left to ``ray.shutdown``)."""
    import ray

    from ascl_ray.runtime import make_learners

    try:
        return make_learners(cfg, path)
    except ray.exceptions.RayActorError as e:
        if "EADDRINUSE" not in str(e):
            raise
        return make_learners(cfg, path)


@pytest.fixture(scope="module")
def setup(tiny_model_path, tiny_tokenizer):
    import ray

    from ascl_ray.cli import compose
    from ascl_ray.runtime import build_stack

    # 2 prompts x 4 samples = 8 rows: 4 per rank, one optimizer step per update
    cfg = compose([f"model.path={tiny_model_path}", "data.prompts_per_iter=2", "rollout.n_samples=4",
                   "learner.num_actors=2"])
    ray.init(num_cpus=2, include_dashboard=False, namespace="ascl-test-learner-ckpt",
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    rt = build_stack(cfg, tiny_model_path, rollout=False, reward=False, sync=False)
    probes = [tiny_tokenizer.encode(t) for t in ("The rule tool says comply.", "What is 2 + 2? The answer is 4.")]
    yield dict(cfg=cfg, rt=rt, tok=tiny_tokenizer, probes=probes, path=tiny_model_path)
    rt.close()
    ray.shutdown()


def test_checkpoint_restores_weights_and_optimizer_state(setup, tmp_path, rollouts_for_learner, nested_diff):
    """update, save, update (A); load, the same update again (B): B == A. With the weights but a fresh
    optimizer (Adam moments and step count lost) B would differ. A fresh learner group (a resumed run)
    that loads the checkpoint lands on A too."""
    from ascl_ray.checkpoint import list_checkpoints, write_checkpoint

    L, tok, probes = setup["rt"].learners, setup["tok"], setup["probes"]
    b1, b2 = rollouts_for_learner(tok, 1), rollouts_for_learner(tok, 2)
    lp0 = L.probe_logprobs(probes)
    L.update(b1)
    lp1 = L.probe_logprobs(probes)
    assert nested_diff(lp0, lp1) > 1e-4, "the first update changed nothing"
    run = tmp_path / "run"
    ckpt = write_checkpoint(run, 1, lambda tmp: L.save_checkpoint(str(tmp)), keep=2)
    assert list_checkpoints(run) == [(1, ckpt)]
    files = sorted(os.listdir(ckpt / "learner"))
    assert sum("optim_states" in f for f in files) == 2, files      # one ZeRO-3 optimizer partition per rank
    assert (ckpt / "latest").read_text().strip() == "learner"

    stats_a = L.update(b2)
    lp_a = L.probe_logprobs(probes)
    assert nested_diff(lp1, lp_a) > 1e-4

    L.load_checkpoint(str(ckpt))
    assert nested_diff(lp1, L.probe_logprobs(probes)) < 1e-6          # weights back to after update 1
    stats_b = L.update(b2)
    lp_b = L.probe_logprobs(probes)
    assert nested_diff(lp_a, lp_b) < 1e-5
    assert abs(stats_a["train/loss"] - stats_b["train/loss"]) < 1e-5
    assert abs(stats_a["train/grad_norm"] - stats_b["train/grad_norm"]) < 1e-5

    fresh = _new_learner_group(setup["cfg"], setup["path"])             # a resumed run's new learner group
    try:
        fresh.load_checkpoint(str(ckpt))
        assert nested_diff(lp1, fresh.probe_logprobs(probes)) < 1e-6
        stats_c = fresh.update(b2)
        assert nested_diff(lp_a, fresh.probe_logprobs(probes)) < 1e-5
        assert abs(stats_a["train/loss"] - stats_c["train/loss"]) < 1e-5
        with pytest.raises(FileNotFoundError, match="learner checkpoint: nothing to load in"):
            fresh.load_checkpoint(str(tmp_path / "empty"))
    finally:
        fresh.close()


def test_dead_rank_fails_fast_instead_of_hanging(setup, rollouts_for_learner):
    """SIGKILL one rank: the next update raises a Ray actor error within 120 s (the live rank would
    otherwise wait in a gloo collective for 30 minutes) and every learner actor is killed."""
    import ray

    L = setup["rt"].learners
    pids = L.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    os.kill(pids[1], signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(ray.exceptions.RayActorError):
        L.update(rollouts_for_learner(setup["tok"], 3))
    assert time.monotonic() - t0 < 120
    with pytest.raises(ray.exceptions.RayActorError):               # rank 0 was killed too
        ray.get(L.actors[0].pid.remote(), timeout=60)
