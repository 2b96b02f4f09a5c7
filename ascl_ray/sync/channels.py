"""Weight sync learner -> rollout engines, behind one small interface, with verification.

    channel = make_sync_channel(name)
    report  = channel.push(learners, rollout)      # SyncReport: bytes, seconds, digests checked
    verify_sync(learners, rollout, probe_seqs, tol) # log-prob equality on probe sequences

Channels (chosen by ``trainer.sync_channel``):
- ``object_store``: ZeRO-3 params gathered one by one on learner rank 0, serialised as one
  safetensors blob into Ray's object store, loaded by every engine's worker extension.
- ``shm``: the same blob written to a /dev/shm file that every engine reads (same node only).
- ``collective``: learner rank 0 broadcasts the gathered tensors over a process group shared with
  the engines' workers (gloo on CPU, NCCL on GPU; ``ascl_ray.sync.collective``). The GPU path.

Verification is never skipped silently: the sha256 of what each engine received must equal the
learner's, and the engine's log-probs on probe sequences must match the learner's within ``tol``
(greedy tokens alone can look right while stale logits survive: environment.md).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ascl_ray.registry import Registry
from ascl_ray.sync.verify import ProbeVerifier, WeightSyncError  # noqa: F401  (WeightSyncError: re-exported)

# a sync channel: a class built with ``(backend=...)`` and ``push(learners, rollout) -> SyncReport``, ``close()``
SYNC_CHANNELS = Registry("weight sync channel", point="sync_channel")


@dataclass
class SyncReport:
    n_bytes: int
    seconds: float
    export_seconds: float
    load_seconds: float
    digest: str


@SYNC_CHANNELS.register("object_store")
class ObjectStoreChannel:
    name = "object_store"

    def __init__(self, backend: str = "auto") -> None:   # no process group: the backend is unused
        pass

    def push(self, learners: Any, rollout: Any) -> SyncReport:
        import ray  # only for sizing the object; the groups own all remote calls

        t0 = time.perf_counter()
        ref, digest = learners.export_weights_ref()
        t1 = time.perf_counter()
        got = rollout.load_weights(ref)
        t2 = time.perf_counter()
        _check_digests(digest, got)
        n = len(ray.get(ref))
        return SyncReport(n, t2 - t0, t1 - t0, t2 - t1, digest)

    def close(self) -> None:
        pass


@SYNC_CHANNELS.register("shm")
class ShmChannel:
    name = "shm"

    def __init__(self, backend: str = "auto") -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        # one file per run, overwritten atomically by each sync (a replaced rollout worker reloads it)
        self.path = os.path.join(base, f"ascl-weights-{os.getpid()}-{id(self)}.safetensors")

    def push(self, learners: Any, rollout: Any) -> SyncReport:
        t0 = time.perf_counter()
        digest = learners.export_weights_to_path(self.path)
        t1 = time.perf_counter()
        got = rollout.load_weights_from_path(self.path)
        n = os.path.getsize(self.path)
        t2 = time.perf_counter()
        _check_digests(digest, got)
        return SyncReport(n, t2 - t0, t1 - t0, t2 - t1, digest)

    def close(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)


@SYNC_CHANNELS.register("collective")
class CollectiveChannel:
    """Learner rank 0 broadcasts the gathered weights tensor by tensor over a process group it shares
    with every engine's worker (``ascl_ray.sync.collective``): gloo on CPU, NCCL on GPU, no
    serialisation and no object store. Both sides hash what they sent/received.

    A rollout worker replaced after a failure gets the current weights through the object store
    (``on_replace``) and the group is rebuilt, with it, on the next push."""

    name = "collective"

    def __init__(self, backend: str = "auto", timeout_s: float = 300.0) -> None:
        if backend == "auto":
            import torch

            backend = "nccl" if torch.cuda.is_available() else "gloo"
        self.backend, self.timeout_s = backend, timeout_s
        self.version = 0
        self.joined: Any = None          # (rollout group, its restart count) the group was built for

    def _join(self, learners: Any, rollout: Any) -> None:
        import ray

        addr, port = learners.rank0_endpoint()
        world = 1 + len(rollout.workers)
        refs = learners.sync_group_init_async(addr, port, world, self.backend, self.timeout_s)
        refs += rollout.weight_group_init_async(addr, port, world, self.backend, self.timeout_s)
        ray.get(refs)
        self.joined = (id(rollout), rollout.restarts)

        def load_replacement(worker: Any) -> None:   # fallback for a fresh worker (rare: after a failure)
            ref, _ = learners.export_weights_ref()
            ray.get(worker.load_weights.remote(ref))

        rollout.on_replace = load_replacement

    def push(self, learners: Any, rollout: Any) -> SyncReport:
        import ray

        t0 = time.perf_counter()
        if self.joined != (id(rollout), rollout.restarts):
            self._join(learners, rollout)
        self.version += 1
        t1 = time.perf_counter()
        lrefs = learners.broadcast_weights_async(self.version)
        rrefs = rollout.receive_weights_async(self.version)
        sent = ray.get(lrefs)[0]
        got = ray.get(rrefs)
        t2 = time.perf_counter()
        n, digest = sent
        _check_digests(digest, got)
        return SyncReport(n, t2 - t0, t1 - t0, t2 - t1, digest)

    def close(self) -> None:
        pass


def make_sync_channel(name: str, backend: str = "auto") -> Any:
    """Build the channel registered as ``name`` (``trainer.sync_channel``); ``backend``: ``trainer.sync_backend``."""
    try:
        cls = SYNC_CHANNELS.get(name)
    except KeyError as e:
        raise ValueError(f"trainer.sync_channel: {e}") from None
    return cls(backend=backend)


def _check_digests(expected: str, got: list[str]) -> None:
    bad = [i for i, d in enumerate(got) if d != expected]
    if bad:
        raise WeightSyncError(f"weight sync: rollout worker(s) {bad} received a payload whose sha256 differs "
                              f"from the learner's ({expected[:12]}...)")


def probe(learners: Any, rollout: Any, probe_seqs: list[list[int]], parallel: bool = True) -> tuple[list, list]:
    """(the learner's log-probs per probe, the same per rollout worker). ``parallel``: the learner's and the
    engines' forwards run at the same time (different actors): the probe costs the slower of the two, not their
    sum. Where both compute on the same CPU cores that is slower than one after the other: two multi-threaded
    forwards oversubscribe the cores (SmolLM2 on 2 cores: 0.4 s each alone, 2.0-2.8 s together, make bench-trl),
    so CPU-only runs pass ``parallel=False`` (``probe_in_parallel``)."""
    from concurrent.futures import ThreadPoolExecutor

    if not parallel:
        return learners.probe_logprobs(probe_seqs), rollout.prompt_logprobs(probe_seqs)
    with ThreadPoolExecutor(1) as ex:
        learner_side = ex.submit(learners.probe_logprobs, probe_seqs)
        engines = rollout.prompt_logprobs(probe_seqs)
        ref = learner_side.result()
    return ref, engines


def probe_in_parallel(num_gpus_per_learner: float, num_gpus_per_engine: float) -> bool:
    """Whether the probe's two forwards may overlap: yes unless both sides compute on CPU (then they share the
    cores and slow each other down, see ``probe``)."""
    return num_gpus_per_learner > 0 or num_gpus_per_engine > 0


def verify_sync(learners: Any, rollout: Any, probe_seqs: list[list[int]], tol: float) -> float:
    """Max |log-prob| difference between learner and every engine on the probe sequences; raises
    WeightSyncError above ``tol`` (the ``exact`` check of ``ascl_ray.sync.verify``, one shot)."""
    return ProbeVerifier("exact", tol).check(*probe(learners, rollout, probe_seqs))["sync/max_logprob_diff"]
