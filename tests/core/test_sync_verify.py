"""The probe check after every sync (ascl_ray/sync/verify.py): exact and calibrated bounds, the staleness
rule, and the mode ``auto`` picks. Pure: the log-probs are given, as the learner and engines return them."""

from __future__ import annotations

import random

import pytest

from ascl_ray.sync.verify import ProbeVerifier, WeightSyncError, resolve_mode


def _lp(seed: int, n: int = 3, t: int = 20) -> list[list[float]]:
    r = random.Random(seed)
    return [[-r.uniform(0.1, 6.0) for _ in range(t)] for _ in range(n)]


def _noisy(lp, scale: float, seed: int) -> list[list[float]]:
    r = random.Random(seed)
    return [[x + r.uniform(-scale, scale) for x in row] for row in lp]


def _shift(lp, d: float) -> list[list[float]]:
    return [[x + d for x in row] for row in lp]


@pytest.mark.parametrize("rd,ld,backend,mode", [
    ("float32", "float32", "gloo", "exact"),
    ("bfloat16", "float32", "gloo", "calibrated"),
    ("auto", "float32", "gloo", "calibrated"),
    ("bfloat16", "bfloat16", "nccl", "calibrated"),
    ("float32", "float32", "nccl", "calibrated"),       # GPU kernels differ even in float32 (TF32, fused ops)
])
def test_auto_mode(rd, ld, backend, mode):
    assert resolve_mode("auto", rd, ld, backend) == mode
    assert resolve_mode("exact", rd, ld, backend) == "exact"
    with pytest.raises(ValueError, match="trainer.sync_verify"):
        resolve_mode("sometimes", rd, ld, backend)


def test_exact_passes_float32_noise_and_fails_a_wrong_model_naming_the_worker():
    v = ProbeVerifier("exact", 1e-3)
    ref = _lp(0)
    m = v.check(ref, [_noisy(ref, 1e-5, 1), _noisy(ref, 1e-5, 2)])
    assert m["sync/max_logprob_diff"] < 1e-5 and m["sync/verify_bound"] == 1e-3
    with pytest.raises(WeightSyncError, match=r"rollout worker 1: .*trainer.sync_tol=0.001"):
        v.check(ref, [ref, _noisy(ref, 0.01, 3)])


def test_calibrated_floor_bound_and_a_wrong_model():
    v = ProbeVerifier("calibrated", 1e-3, factor=3.0, tol_max=1.0)
    ref = _lp(0)
    m = v.check(ref, [_noisy(ref, 0.2, 1)])                    # first check: same weights, bf16 noise
    d0 = m["sync/max_logprob_diff"]
    assert 0.15 < d0 <= 0.2 and v.floor == d0 and m["sync/verify_bound"] == pytest.approx(3 * d0)
    ref2 = _shift(ref, -0.05)                                  # the learner trained; the engine followed
    v.check(ref2, [_noisy(ref2, 0.2, 2)])
    ref3 = _shift(ref2, -0.05)
    with pytest.raises(WeightSyncError, match=r"rollout worker 0: .*sync_tol_factor"):
        v.check(ref3, [_lp(99)])                               # another model entirely


def test_calibration_refuses_a_floor_above_tol_max():
    ref = _lp(0)
    with pytest.raises(WeightSyncError, match="trainer.sync_tol_max=1"):
        ProbeVerifier("calibrated", 1e-3, tol_max=1.0).check(ref, [_lp(5)])


def test_an_engine_that_did_not_take_the_update_is_caught_under_the_floor():
    """The learner moves by less than the calibrated bound, so only the staleness rule can see it."""
    v = ProbeVerifier("calibrated", 1e-3, factor=3.0)
    ref = _lp(0)
    eng = _noisy(ref, 0.2, 1)
    v.check(ref, [eng])
    ref2 = _shift(ref, 0.3)                                    # moved 0.3 > the floor (~0.2), < 3x the floor
    with pytest.raises(WeightSyncError, match="did not take the new weights"):
        v.check(ref2, [[list(row) for row in eng]])            # bit-identical engine answer
    # an engine that moved passes; a learner that did not move asks nothing of the engine
    v2 = ProbeVerifier("calibrated", 1e-3, factor=3.0)
    v2.check(ref, [eng])
    m = v2.check(ref2, [_noisy(ref2, 0.2, 7)])
    assert m["sync/learner_moved"] == pytest.approx(0.3)
    v2.check(ref2, [[list(row) for row in _noisy(ref2, 0.2, 7)]])


def test_shape_mismatch_is_an_error():
    v = ProbeVerifier("exact", 1e-3)
    ref = _lp(0)
    with pytest.raises(WeightSyncError, match="worker 0 scored 2 probes"):
        v.check(ref, [ref[:2]])
    with pytest.raises(WeightSyncError, match="worker 0 probe 1: 19 log-probs"):
        v.check(ref, [[ref[0], ref[1][:-1], ref[2]]])


def test_probe_runs_sides_in_parallel_only_off_shared_cpus():
    import threading
    import time

    from ascl_ray.sync.channels import probe, probe_in_parallel

    assert probe_in_parallel(0, 0) is False                  # both on CPU: they would share the cores
    assert probe_in_parallel(1, 0) and probe_in_parallel(0, 1) and probe_in_parallel(1, 1)

    class Side:
        def __init__(self, out):
            self.out, self.busy, self.overlapped = out, threading.Event(), False

        def _run(self, other):
            self.busy.set()
            time.sleep(0.2)
            self.overlapped = other.busy.is_set()
            self.busy.clear()
            return self.out

    learner, engines = Side([[-1.0]]), Side([[[-1.0]]])
    learner.probe_logprobs = lambda seqs: learner._run(engines)
    engines.prompt_logprobs = lambda seqs: engines._run(learner)
    assert probe(learner, engines, [[1, 2]], parallel=False) == ([[-1.0]], [[[-1.0]]])
    assert not learner.overlapped and not engines.overlapped
    assert probe(learner, engines, [[1, 2]], parallel=True) == ([[-1.0]], [[[-1.0]]])
    assert learner.overlapped or engines.overlapped
