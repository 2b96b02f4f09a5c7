"""Does the engine run the learner's weights? The check after every sync, for any pair of dtypes.

The probe: the learner and every engine score the same probe sequences (log p of each token given the ones
before); ``check`` compares them. Two bounds (``trainer.sync_verify``):

- ``exact``: max |log-prob diff| <= ``trainer.sync_tol`` every time. Right when both sides do the same
  arithmetic: float32 on CPU, where the diff is ~1e-5 and 1e-3 catches a stale or wrong model.
- ``calibrated``: an engine in another dtype (a bfloat16 vLLM engine beside float32 ZeRO-3 learners) or with
  other kernels (GPU) differs from the learner even on identical weights, by a floor ``d0`` (SmolLM2-135M,
  bf16 engine vs fp32 learner: 0.24 nats, max over the probe tokens). ``d0`` is measured at the run's
  first check, made when both sides hold the same checkpoint (start or resume), and must itself stay under
  ``trainer.sync_tol_max``; later checks must stay under ``max(sync_tol, sync_tol_factor * d0)``. That bound
  catches an engine on the wrong or a far older model, not one missed update, so a second rule covers that:
  when the learner's probe log-probs moved by more than the floor since the last check, the engine's must
  have moved too (an engine that did not take the new weights returns bit-identical log-probs).

``auto`` is ``exact`` for float32 on both sides with the gloo (CPU) backend, else ``calibrated``.
"""

from __future__ import annotations

from typing import Optional, Sequence

MODES = ("auto", "exact", "calibrated")


class WeightSyncError(RuntimeError):
    pass


def resolve_mode(mode: str, rollout_dtype: str, learner_dtype: str, backend: str) -> str:
    if mode not in MODES:
        raise ValueError(f"trainer.sync_verify: unknown mode {mode!r}; known: {list(MODES)}")
    if mode != "auto":
        return mode
    same_math = rollout_dtype == "float32" and learner_dtype == "float32" and backend == "gloo"
    return "exact" if same_math else "calibrated"


def _max_abs(a: Sequence[float], b: Sequence[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


class ProbeVerifier:
    """Stateful across the checks of one process: the calibrated floor and the previous probe results."""

    def __init__(self, mode: str = "exact", tol: float = 1e-3, factor: float = 3.0, tol_max: float = 1.0) -> None:
        if mode not in ("exact", "calibrated"):
            raise ValueError(f"ProbeVerifier: mode must be exact or calibrated (resolve auto first), got {mode!r}")
        self.mode, self.tol, self.factor, self.tol_max = mode, tol, factor, tol_max
        self.floor: Optional[float] = None
        self._prev: Optional[tuple[list[list[float]], list[list[list[float]]]]] = None

    @property
    def bound(self) -> float:
        if self.mode == "exact" or self.floor is None:
            return self.tol
        return max(self.tol, self.factor * self.floor)

    def check(self, ref: list[list[float]], engines: list[list[list[float]]]) -> dict[str, float]:
        """``ref``: the learner's log-probs per probe; ``engines``: the same per rollout worker. Raises
        WeightSyncError naming the worker, the probe and the bound; returns the check's metrics."""
        worst_w: list[float] = []
        for w, per_worker in enumerate(engines):
            if len(per_worker) != len(ref):
                raise WeightSyncError(f"weight sync verify: worker {w} scored {len(per_worker)} probes, learner {len(ref)}")
            worst = 0.0
            for s, (a, b) in enumerate(zip(ref, per_worker)):
                if len(a) != len(b):
                    raise WeightSyncError(f"weight sync verify: worker {w} probe {s}: {len(b)} log-probs, learner {len(a)}")
                worst = max(worst, _max_abs(a, b))
            worst_w.append(worst)
        worst = max(worst_w, default=0.0)
        if self.mode == "calibrated" and self.floor is None:
            if worst > self.tol_max:
                raise WeightSyncError(
                    f"weight sync verify (calibrating): with the same checkpoint on both sides the engine's probe "
                    f"log-probs differ from the learner's by {worst:.3g} > trainer.sync_tol_max={self.tol_max:g}: the "
                    f"engine is not running the learner's model (or its dtype/kernels differ more than that bound "
                    f"allows: raise trainer.sync_tol_max)")
            self.floor = worst
        bound = self.bound
        for w, d in enumerate(worst_w):
            if d > bound:
                how = (f"trainer.sync_tol={self.tol:g}" if self.mode == "exact" or bound == self.tol else
                       f"{self.factor:g} x the floor {self.floor:.3g} measured at the first check "
                       f"(trainer.sync_tol_factor)")
                raise WeightSyncError(
                    f"weight sync verify failed: rollout worker {w}: max |logprob diff| {d:.3g} > {bound:.3g} "
                    f"({how}). The engine is not running the learner's weights.")
        m = {"sync/max_logprob_diff": worst, "sync/verify_bound": bound}
        if self._prev is not None:
            prev_ref, prev_eng = self._prev
            moved = max((_max_abs(a, b) for a, b in zip(ref, prev_ref)), default=0.0)
            m["sync/learner_moved"] = moved
            for w, (now, before) in enumerate(zip(engines, prev_eng)):
                e_moved = max((_max_abs(a, b) for a, b in zip(now, before)), default=0.0)
                if moved > max(self.tol, self.floor or 0.0) and e_moved == 0.0:
                    raise WeightSyncError(
                        f"weight sync verify failed: rollout worker {w} returned exactly the probe log-probs of the "
                        f"previous check while the learner's moved by {moved:.3g}: the engine did not take the new "
                        f"weights")
        self._prev = ([list(a) for a in ref], [[list(a) for a in e] for e in engines])
        return m
