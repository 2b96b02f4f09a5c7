"""Which errors the driver survives (``ascl_ray.failures``): Ray's actor errors, and a live peer's error while
an actor is dead (a collective that lost a rank), but not an error of live actors. Real Ray actors: one is
SIGKILLed, as Ray's memory monitor or a preempted node would."""

from __future__ import annotations

import os
import signal
import time

import pytest


def test_a_live_actors_error_is_not_a_failure_unless_an_actor_died():
    from ascl_ray.failures import is_actor_failure

    class Died(Exception):
        pass

    asked = []
    assert is_actor_failure(Died(), lambda: asked.append(1) or [], recoverable=(Died,))
    assert asked == []                                        # an actor error needs no probe
    assert not is_actor_failure(RuntimeError("bug"), lambda: [], recoverable=(Died,))
    assert is_actor_failure(RuntimeError("gloo: Connection closed by peer"), lambda: ["learner 1"],
                            recoverable=(Died,))


@pytest.mark.slow
def test_dead_actors_names_the_killed_one_only():
    import ray

    from ascl_ray.failures import dead_actors, group_actors

    @ray.remote(num_cpus=0)
    class Rank:
        def pid(self):
            return os.getpid()

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        class Group:
            def __init__(self, actors):
                self.actors = self.workers = actors

        ranks, engines = [Rank.remote() for _ in range(2)], [Rank.remote()]
        stack = type("S", (), {"learners": Group(ranks), "rollout": Group(engines)})()
        named = group_actors(stack)
        assert [n for n, _ in named] == ["learner 0", "learner 1", "rollout 0"]
        assert dead_actors(named) == []
        os.kill(ray.get(ranks[1].pid.remote()), signal.SIGKILL)
        t = time.time()
        while time.time() - t < 30 and not (dead := dead_actors(named, timeout_s=10)):
            time.sleep(0.5)
        assert dead == ["learner 1"]
        assert group_actors(None) == []
    finally:
        if started:
            ray.shutdown()
