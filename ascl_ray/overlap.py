"""When rollout and training overlap: the schedule of generations and weight syncs (pure, no Ray).

``trainer.mode`` sets the staleness bound ``k`` = how many learner updates a batch may be behind:

    sync          k = 0   generate t (weights t) -> train t -> sync t+1 -> generate t+1 ...
    one_step_off  k = 1   generation of t+1 (weights t) runs while the learners train on t
    async         k = trainer.max_staleness: generations run ahead with the engines' weights and a sync is
                  taken only when the next launch would otherwise exceed k (k = 0 is ``sync``, k = 1 is
                  ``one_step_off``; k > 1 also skips syncs: weights reach the engines every k iterations)

Versions: the learner's version is the number of updates it has taken (batch ``t`` is trained at version
``t``); the engines' version is the learner version they last received. A batch generated with engine
version ``v`` and trained at ``t`` has staleness ``t - v`` (logged as ``overlap/staleness``; the truncated IS
in ``algo/correction.py`` corrects for the gap with the rollout log-probs).

The driver asks two questions:

- ``launch_early(t)``: after collecting batch ``t``, launch the generation of ``t + 1`` now, with the
  engines' current weights, before training on ``t``? (overlap modes, when ``t + 1`` exists)
- ``sync_after(t, in_flight)``: after training on ``t`` (learner at version ``t + 1``), push the weights now?
  Yes iff the next batch to be launched would otherwise be more than ``k`` versions behind. A push is
  taken between engine batches only: the driver first collects a generation in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("sync", "one_step_off", "async")


def staleness_bound(mode: str, max_staleness: int) -> int:
    if mode not in MODES:
        raise ValueError(f"trainer.mode: unknown mode {mode!r}; expected one of {list(MODES)}")
    return {"sync": 0, "one_step_off": 1}.get(mode, int(max_staleness))


@dataclass
class Schedule:
    k: int                      # staleness bound
    iterations: int             # the run ends after batch ``iterations - 1``
    engine_version: int = 0     # learner version the engines hold

    @classmethod
    def of(cls, mode: str, max_staleness: int, iterations: int, engine_version: int = 0) -> "Schedule":
        return cls(staleness_bound(mode, max_staleness), iterations, engine_version)

    def launch_early(self, t: int) -> bool:
        """Launch batch ``t + 1`` before training on ``t`` (with the engines' weights, version
        ``engine_version``)? Its staleness will be ``t + 1 - engine_version``, at most ``k`` by ``sync_after``."""
        return self.k >= 1 and t + 1 < self.iterations and t + 1 - self.engine_version <= self.k

    def sync_after(self, t: int, in_flight: bool) -> bool:
        """After training on batch ``t``: push version ``t + 1`` now? ``in_flight``: batch ``t + 1`` was launched
        already (it is collected before the push). The next launch is ``t + 2`` then, else ``t + 1``; it may
        not be more than ``k`` versions behind the engines' weights. After the last batch the engines always
        get the final weights (what an eval after training runs), as in ``sync`` mode."""
        if t + 1 >= self.iterations:
            return True
        nxt = t + 2 if in_flight else t + 1
        return nxt - self.engine_version > self.k

    def synced(self, version: int) -> None:
        self.engine_version = version
