"""The overlap schedule (ascl_ray/overlap.py): simulated over whole runs, every batch's staleness stays within
the bound, sync mode is strictly sequential, one_step_off overlaps every batch but the first, and async
skips syncs without ever exceeding max_staleness."""

from __future__ import annotations

import pytest

from ascl_ray.overlap import MODES, Schedule, staleness_bound


def simulate(mode, k, n):
    """Replays the driver's use of the schedule; returns per batch (staleness, overlapped) and the syncs."""
    s = Schedule.of(mode, k, n)
    launched = {0: s.engine_version}          # batch -> engine version it was generated with
    early = set()
    syncs = []
    for t in range(n):
        if t not in launched:
            launched[t] = s.engine_version
        if s.launch_early(t):
            launched[t + 1] = s.engine_version
            early.add(t + 1)
        # train on t: the learner goes to version t + 1
        if s.sync_after(t, in_flight=(t + 1) in launched):
            s.synced(t + 1)
            syncs.append(t + 1)
    return [(t - launched[t], t in early) for t in range(n)], syncs


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_sync_mode_is_sequential(n):
    per, syncs = simulate("sync", 7, n)       # max_staleness is ignored outside async
    assert per == [(0, False)] * n and syncs == list(range(1, n + 1))


@pytest.mark.parametrize("n", [2, 5, 12])
def test_one_step_off_overlaps_every_batch_after_the_first(n):
    per, syncs = simulate("one_step_off", 0, n)
    assert per == [(0, False)] + [(1, True)] * (n - 1)
    assert syncs == list(range(1, n + 1))


@pytest.mark.parametrize("k,n", [(0, 6), (1, 6), (2, 9), (3, 10), (5, 4)])
def test_async_never_exceeds_the_bound_and_skips_syncs(k, n):
    per, syncs = simulate("async", k, n)
    assert max(st for st, _ in per) <= k
    if k >= 1 and n > 1:
        assert max(st for st, _ in per) == min(k, n - 1)     # the bound is used, not just respected
        assert all(ov for _, ov in per[1:])
    if k == 0:
        assert per == simulate("sync", 0, n)[0]
    if k == 1:
        assert (per, syncs) == simulate("one_step_off", 0, n)
    if k >= 2:
        assert len(syncs) < n                                # weights travel less often than once per batch
    assert syncs[-1] == n                                    # the engines end with the final weights


def test_bad_mode_names_the_key():
    assert staleness_bound("async", 3) == 3 and set(MODES) == {"sync", "one_step_off", "async"}
    with pytest.raises(ValueError, match=r"trainer.mode: unknown mode 'fast'"):
        staleness_bound("fast", 1)
