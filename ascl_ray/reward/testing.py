"""Test-only judges for fault-injection tests and benchmarks (importing this module registers them).

Name it in a pool config's ``imports`` so Ray actors register them too::

    RewardPool({"judge": "test_faulty", "imports": ["ascl_ray.reward.testing"], ...})

``test_faulty`` behaves like the ``refusal`` judge, except on responses containing a marker:
  ``[[HANG]]``  sleeps ``hang_s`` seconds (default 3600): a hung scorer;
  ``[[CRASH]]`` raises RuntimeError: a crashing scorer;
  ``[[DIE]]``   kills its own process (``os._exit(1)``): a dying actor.
``test_slow`` sleeps ``delay_s`` per batch call then answers like ``refusal`` (throughput benchmarks).
Never used by production configs.
"""

from __future__ import annotations

import os
import time

from ascl_ray.reward.judges import JudgeVerdict, RefusalJudge, register_judge

__all__ = ["FaultyJudge", "SlowJudge"]


class FaultyJudge(RefusalJudge):
    name = "test_faulty"

    def __init__(self, hang_s: float = 3600.0, compliance_safe: bool = False) -> None:
        super().__init__(compliance_safe=compliance_safe)
        self.hang_s = float(hang_s)

    def _judge(self, prompts: list[str], responses: list[str]) -> list[JudgeVerdict]:
        for r in responses:
            if "[[DIE]]" in r:
                os._exit(1)
            if "[[CRASH]]" in r:
                raise RuntimeError("test_faulty judge: deliberate crash")
            if "[[HANG]]" in r:
                time.sleep(self.hang_s)
        return super()._judge(prompts, responses)


class SlowJudge(RefusalJudge):
    name = "test_slow"

    def __init__(self, delay_s: float = 0.05, per_item_s: float = 0.0, compliance_safe: bool = False) -> None:
        super().__init__(compliance_safe=compliance_safe)
        self.delay_s = float(delay_s)
        self.per_item_s = float(per_item_s)

    def _judge(self, prompts: list[str], responses: list[str]) -> list[JudgeVerdict]:
        time.sleep(self.delay_s + self.per_item_s * len(responses))
        return super()._judge(prompts, responses)


register_judge("test_faulty", FaultyJudge)
register_judge("test_slow", SlowJudge)
