"""Reward pool: N Ray actors (``RewardWorker``) that judge and score rollouts. The only Ray file of the reward
subsystem.

    pool = RewardPool({"num_workers": 2, "judge": "refusal"})
    out = pool.score(items)      # list of {"reward": float, "valid": bool, "info": dict}, input order
    pool.close()

Input item (dict): ``prompt_text, prompt_type, final_text, reference, math_kind, malformed_call, consulted``
(optional ``has_final_answer``, default: ``final_text`` is not blank). ``reference``/``math_kind`` may be None
for non-math rows.

Config (``RewardPoolConfig``; a plain dict with these keys, unknown keys are an error):

    num_workers          int    2      actors
    num_cpus_per_worker  float  1.0    Ray CPUs reserved per actor (one bundle per actor in the pool's placement
                                       group, reserved before any actor starts: ascl_ray/placement.py)
    resources            dict   {}     custom Ray resources per actor (pins the pool to nodes that carry them)
    judge                str    "refusal"  registered judge name (see judges.py) for harmful/benign rows
    judge_options        dict   {}     kwargs of the judge factory. An option ``X_factory: "module:callable"``
                                       is called inside the actor (with ``X_factory_kwargs``) and passed as
                                       ``X`` (e.g. ``engine_factory`` builds the guard model's engine there)
    judge_by_type        dict   {}     per prompt type override: {"benign_sensitive": {"name": .., "options": ..}}
    imports              list   []     modules the actors import first (to register custom judges)
    judge_batch_size     int    64     pairs per judge call
    judge_timeout_s      float  120    deadline of one batched judge call; on timeout or error the batch is
                                       re-judged item by item
    item_timeout_s       float  30     deadline of one item (per-item judge call, then score_rollout)
    math_timeout_s       float  5      verify_math hard limit (inside the item deadline)
    shard_timeout_s      float|None None  backstop deadline of a whole shard (ray.wait); None: judge_timeout_s
                                       + item_timeout_s * (items in shard + 1) + 30
    max_restarts         int    3      Ray restarts of a crashed actor
    rescore_on_actor_death bool True   a shard whose actor died is rescored once on the restarted actor;
                                       if that fails too its items are returned invalid
    consult_cost         float  0.0    subtracted from the reward of consulted rollouts (methods.md section 5)
    startup_timeout_s    float  180    actors must answer ping within this
    math_workers_per_actor int  1      math-verify helper processes per actor

Failure handling: a hung or crashing scorer never fails ``score``: the item gets ``valid=False``,
``reward=0.0`` and ``info['error']``; counts are in ``pool.stats`` and logged (logger
``ascl_ray.reward.pool``). An actor whose judge thread hung is replaced after the call (a hung thread cannot
be killed); a dead actor is restarted by Ray (or replaced) and its shard rescored.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time
import traceback
from collections import Counter
from typing import Any, Callable, Optional

import ray

__all__ = ["RewardPool", "RewardPoolConfig", "RewardWorker", "ScoreTimeout", "REQUIRED_ITEM_KEYS"]

log = logging.getLogger("ascl_ray.reward.pool")

REQUIRED_ITEM_KEYS = ("prompt_text", "prompt_type", "final_text", "reference", "math_kind", "malformed_call",
                      "consulted")


from ascl_ray.reward.config import RewardPoolConfig  # noqa: E402  (re-exported)


class ScoreTimeout(Exception):
    """A judge call or an item's scoring exceeded its deadline."""


# --------------------------------------------------------------------------------------------------------------
# helpers (run inside actors)
# --------------------------------------------------------------------------------------------------------------
def _run_with_deadline(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``fn`` in a daemon thread; ScoreTimeout if it has not returned within ``timeout_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="reward-scorer")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise ScoreTimeout(f"exceeded {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _resolve_options(options: dict) -> dict:
    out = dict(options)
    for k in [k for k in out if k.endswith("_factory") and isinstance(out[k], str)]:
        path = out.pop(k)
        kwargs = out.pop(k + "_kwargs", {}) or {}
        mod, _, attr = path.partition(":")
        if not attr:
            raise ValueError(f"judge option {k}={path!r}: expected 'module:callable'")
        out[k[: -len("_factory")]] = getattr(importlib.import_module(mod), attr)(**kwargs)
    return out


def _judge_key(name: str, options: dict) -> str:
    return name + "|" + json.dumps(options, sort_keys=True, default=str)


def _invalid(error: str, **info: Any) -> dict:
    return {"reward": 0.0, "valid": False, "info": {"error": error, **info}}


class RewardWorker:
    """Ray actor body (wrapped with ``ray.remote`` by the pool). Judges + scores a shard of items."""

    def __init__(self, cfg: Any, worker_index: int = 0, plugins: tuple = ()) -> None:
        from ascl_ray.resources import actor_env_defaults

        actor_env_defaults()
        self.cfg = RewardPoolConfig.from_dict(cfg)
        self.index = worker_index
        self.hung_threads = 0
        os.environ.setdefault("ASCL_MATH_WORKERS", str(self.cfg.math_workers_per_actor))
        for m in (*plugins, *self.cfg.imports):   # algorithm.plugins, then the pool's own imports
            importlib.import_module(m)
        from ascl_ray.reward.judges import get_judge

        self.judges: dict[str, Any] = {}
        specs = [(self.cfg.judge, self.cfg.judge_options)] + [
            (s["name"], s.get("options", {}) or {}) for s in self.cfg.judge_by_type.values()
        ]
        for name, opts in specs:
            key = _judge_key(name, opts)
            if key not in self.judges:
                self.judges[key] = get_judge(name, **_resolve_options(opts))
        from ascl_ray.reward import math as rmath

        try:
            rmath.warmup(60.0)
        except Exception as e:  # math rows will report the failure per item
            log.warning("RewardWorker %d: math-verify helper warmup failed: %s", worker_index, e)

    def ping(self) -> dict:
        return {"pid": os.getpid(), "index": self.index, "hung_threads": self.hung_threads,
                "node_id": ray.get_runtime_context().get_node_id()}

    def _judge_for(self, prompt_type: str) -> tuple[str, Any]:
        spec = self.cfg.judge_by_type.get(prompt_type)
        key = _judge_key(spec["name"], spec.get("options", {}) or {}) if spec else _judge_key(
            self.cfg.judge, self.cfg.judge_options)
        return key, self.judges[key]

    def score_shard(self, items: list[dict]) -> dict:
        from ascl_ray.batch import prompt_types
        from ascl_ray.reward.rules import rule_needs_judge
        from ascl_ray.reward.scoring import score_rollout

        kinds = prompt_types()  # the registered reward rules

        cfg = self.cfg
        n = len(items)
        results: list[Optional[dict]] = [None] * n
        counts: Counter = Counter()

        # 1. validate
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                results[i] = _invalid(f"item is {type(it).__name__}, expected dict")
                continue
            missing = [k for k in REQUIRED_ITEM_KEYS if k not in it]
            if missing:
                results[i] = _invalid(f"item misses keys {missing}")
            elif it["prompt_type"] not in kinds:
                results[i] = _invalid(f"prompt_type={it['prompt_type']!r} not in {kinds}")

        def gated(it: dict) -> bool:
            return bool(it.get("malformed_call")) or not it.get("has_final_answer", True) or not str(
                it.get("final_text") or "").strip()

        # 2. batched judge calls (per judge), item-by-item fallback on timeout / error
        verdicts: dict[int, Any] = {}
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            if results[i] is None and rule_needs_judge(it["prompt_type"]) and not gated(it):
                key, _ = self._judge_for(it["prompt_type"])
                groups.setdefault(key, []).append(i)
        for key, idxs in groups.items():
            judge = self.judges[key]
            for s in range(0, len(idxs), max(1, cfg.judge_batch_size)):
                chunk = idxs[s : s + cfg.judge_batch_size]
                ps = [str(items[i].get("prompt_text") or "") for i in chunk]
                rs = [str(items[i].get("final_text") or "") for i in chunk]
                try:
                    vs = _run_with_deadline(lambda: judge.judge(ps, rs), cfg.judge_timeout_s)
                    for i, v in zip(chunk, vs):
                        verdicts[i] = v
                    continue
                except ScoreTimeout:
                    self.hung_threads += 1
                    counts["judge_batch_timeouts"] += 1
                    log.warning("RewardWorker %d: judge batch of %d timed out; judging item by item",
                                self.index, len(chunk))
                except Exception as e:  # noqa: BLE001
                    counts["judge_batch_errors"] += 1
                    log.warning("RewardWorker %d: judge batch failed (%s: %s); judging item by item",
                                self.index, type(e).__name__, e)
                for i, p, r in zip(chunk, ps, rs):
                    try:
                        verdicts[i] = _run_with_deadline(lambda p=p, r=r: judge.judge([p], [r])[0],
                                                         cfg.item_timeout_s)
                    except ScoreTimeout:
                        self.hung_threads += 1
                        counts["timeouts"] += 1
                        results[i] = _invalid(f"judge timeout after {cfg.item_timeout_s:g}s", kind="timeout")
                    except Exception as e:  # noqa: BLE001
                        counts["errors"] += 1
                        results[i] = _invalid(f"judge error: {type(e).__name__}: {str(e)[:300]}", kind="error")

        # 3. reward rules per item
        for i, it in enumerate(items):
            if results[i] is not None:
                continue
            v = verdicts.get(i)
            try:
                reward, info = _run_with_deadline(
                    lambda it=it, v=v: score_rollout(
                        it["prompt_type"], it.get("final_text"), it.get("reference"), it.get("math_kind"),
                        malformed_call=bool(it.get("malformed_call")),
                        has_final_answer=bool(it.get("has_final_answer", True)),
                        verdict=v, consulted=bool(it.get("consulted")), consult_cost=cfg.consult_cost,
                        math_timeout_s=cfg.math_timeout_s, expected=it.get("expected")),
                    cfg.item_timeout_s)
            except ScoreTimeout:
                self.hung_threads += 1
                counts["timeouts"] += 1
                results[i] = _invalid(f"scoring timeout after {cfg.item_timeout_s:g}s", kind="timeout")
                continue
            except Exception as e:  # noqa: BLE001
                counts["errors"] += 1
                results[i] = _invalid(f"scoring error: {type(e).__name__}: {str(e)[:300]}", kind="error",
                                      traceback=traceback.format_exc(limit=3)[-600:])
                continue
            if v is not None and hasattr(v, "to_dict"):
                vd = v.to_dict()
                vd["raw"] = str(vd.get("raw", ""))[:300]
                info["verdict"] = vd
            valid = bool(info.get("valid", True))
            if not valid:
                counts["invalid_verdicts"] += 1
            results[i] = {"reward": float(reward), "valid": valid, "info": info}
        for r in results:
            assert r is not None
            r["info"]["worker"] = self.index
        return {"results": results, "counts": dict(counts), "hung_threads": self.hung_threads, "pid": os.getpid()}


# --------------------------------------------------------------------------------------------------------------
# the pool (driver side)
# --------------------------------------------------------------------------------------------------------------
_ACTOR_ERRORS: tuple = tuple(
    e for e in (getattr(ray.exceptions, n, None) for n in ("RayActorError", "ActorDiedError", "ActorUnavailableError"))
    if e is not None
)


class RewardPool:
    """N ``RewardWorker`` actors; ``score`` shards a batch across them (see module doc)."""

    def __init__(self, cfg_dict: Any = None, plugins: tuple = (), placement_timeout_s: Optional[float] = None) -> None:
        """``cfg_dict``: a ``RewardPoolConfig`` (the typed ``reward`` config) or a dict of its keys;
        ``plugins``: ``algorithm.plugins``, imported in every worker (reward rules, judges registered there);
        ``placement_timeout_s``: the bundles must be reserved within this (default ``startup_timeout_s``)."""
        self.cfg = RewardPoolConfig.from_dict(cfg_dict)
        self.plugins = tuple(plugins)
        if not ray.is_initialized():
            raise RuntimeError("RewardPool: call ray.init(...) before creating the pool")
        need = self.cfg.num_workers * self.cfg.num_cpus_per_worker
        total = float(ray.cluster_resources().get("CPU", 0.0))
        if need > total + 1e-9:
            raise RuntimeError(f"RewardPool: {self.cfg.num_workers} workers x {self.cfg.num_cpus_per_worker} CPU "
                               f"= {need:g} CPUs, but the Ray cluster has {total:g}")
        free = float(ray.available_resources().get("CPU", 0.0))
        if need > free + 1e-9:
            log.warning("RewardPool: needs %g CPUs, %g free now: workers start when CPUs are released", need, free)
        from ascl_ray import placement

        self._pg = placement.place(placement.reward_plan(self.cfg),
                                   self.cfg.startup_timeout_s if placement_timeout_s is None else placement_timeout_s)
        self._cls = ray.remote(RewardWorker)
        self.stats: Counter = Counter()
        self._pids: dict[int, Any] = {}     # slot -> the worker process that answered last (restarts counted)
        self._actors: list[Any] = [self._new_actor(i) for i in range(self.cfg.num_workers)]
        self._closed = False
        try:
            ray.get([a.ping.remote() for a in self._actors], timeout=self.cfg.startup_timeout_s)
        except Exception as e:
            self.close()
            raise RuntimeError(f"RewardPool: reward workers failed to start within {self.cfg.startup_timeout_s:g}s "
                               f"(free CPUs {ray.available_resources().get('CPU', 0)}): {e}") from e

    # -- actors --------------------------------------------------------------------------------------------
    def _new_actor(self, index: int) -> Any:
        from ascl_ray.placement import in_bundle

        return self._cls.options(num_cpus=self.cfg.num_cpus_per_worker, resources=dict(self.cfg.resources or {}),
                                 scheduling_strategy=in_bundle(self._pg, index),
                                 max_restarts=self.cfg.max_restarts, max_task_retries=0).remote(self.cfg, index, self.plugins)

    def _replace(self, index: int, reason: str) -> None:
        log.warning("RewardPool: replacing reward worker %d (%s)", index, reason)
        self.stats["actor_replacements"] += 1
        try:
            ray.kill(self._actors[index], no_restart=True)
        except Exception:
            pass
        self._actors[index] = self._new_actor(index)
        self._pids.pop(index, None)

    def _ensure_alive(self, index: int) -> bool:
        """True if actor ``index`` answers ping (after a Ray restart); otherwise replace it."""
        try:
            ray.get(self._actors[index].ping.remote(), timeout=self.cfg.startup_timeout_s)
            return True
        except Exception as e:  # noqa: BLE001
            self._replace(index, f"not answering after death: {type(e).__name__}")
            try:
                ray.get(self._actors[index].ping.remote(), timeout=self.cfg.startup_timeout_s)
                return True
            except Exception:  # noqa: BLE001
                return False

    @property
    def num_workers(self) -> int:
        return len(self._actors)

    # -- scoring -------------------------------------------------------------------------------------------
    def _shard_timeout(self, n: int) -> float:
        if self.cfg.shard_timeout_s:
            return float(self.cfg.shard_timeout_s)
        return self.cfg.judge_timeout_s + self.cfg.item_timeout_s * (n + 1) + 30.0

    def score(self, items: list[dict]) -> list[dict]:
        if self._closed:
            raise RuntimeError("RewardPool.score after close()")
        items = list(items)
        n = len(items)
        if n == 0:
            return []
        k = min(self.num_workers, n)
        bounds = [(j * n // k, (j + 1) * n // k) for j in range(k)]
        results: list[Optional[dict]] = [None] * n
        pending: dict[Any, tuple[int, int, int, int, float]] = {}  # ref -> (slot, lo, hi, attempt, deadline)
        t0 = time.monotonic()

        def submit(slot: int, lo: int, hi: int, attempt: int) -> None:
            ref = self._actors[slot].score_shard.remote(items[lo:hi])
            pending[ref] = (slot, lo, hi, attempt, time.monotonic() + self._shard_timeout(hi - lo))

        def fail(lo: int, hi: int, error: str, kind: str) -> None:
            for i in range(lo, hi):
                results[i] = _invalid(error, kind=kind)
            self.stats[kind] += hi - lo

        for slot, (lo, hi) in enumerate(bounds):
            submit(slot, lo, hi, 0)
        while pending:
            next_deadline = min(v[4] for v in pending.values())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, next_deadline - time.monotonic()))
            for ref in ready:
                slot, lo, hi, attempt, _dl = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except _ACTOR_ERRORS as e:
                    self.stats["actor_deaths"] += 1
                    self._pids.pop(slot, None)      # its restart is this death, not another one
                    log.warning("RewardPool: reward worker %d died scoring items %d..%d: %s", slot, lo, hi - 1,
                                str(e).splitlines()[0][:200])
                    alive = self._ensure_alive(slot)
                    if alive and attempt == 0 and self.cfg.rescore_on_actor_death:
                        self.stats["rescored_shards"] += 1
                        submit(slot, lo, hi, 1)
                    else:
                        fail(lo, hi, f"reward worker died ({type(e).__name__})", "actor_death")
                    continue
                except Exception as e:  # noqa: BLE001 - a bug inside score_shard: never crash the run
                    self.stats["shard_errors"] += 1
                    log.error("RewardPool: shard %d..%d failed: %s", lo, hi - 1, e)
                    fail(lo, hi, f"shard error: {type(e).__name__}: {str(e)[:300]}", "shard_error")
                    continue
                for i, r in enumerate(out["results"]):
                    results[lo + i] = r
                pid = out.get("pid")
                if pid is not None and self._pids.get(slot, pid) != pid:   # Ray restarted it between calls
                    self.stats["actor_restarts"] += 1
                self._pids[slot] = pid
                for c, v in out.get("counts", {}).items():
                    self.stats[c] += v
                if out.get("hung_threads", 0) > 0:
                    # a hung scorer thread cannot be killed: start a fresh process for the next call
                    self._replace(slot, f"{out['hung_threads']} hung scorer thread(s)")
            now = time.monotonic()
            for ref in [r for r, v in pending.items() if v[4] <= now]:
                slot, lo, hi, attempt, _dl = pending.pop(ref)
                log.warning("RewardPool: shard %d..%d on worker %d exceeded its deadline", lo, hi - 1, slot)
                fail(lo, hi, f"shard deadline exceeded ({self._shard_timeout(hi - lo):g}s)", "shard_timeout")
                self._replace(slot, "shard deadline exceeded")
        out_list = [r if r is not None else _invalid("not scored", kind="error") for r in results]
        n_invalid = sum(1 for r in out_list if not r["valid"])
        self.stats["items"] += n
        self.stats["invalid"] += n_invalid
        self.stats["batches"] += 1
        if n_invalid:
            errs = Counter(str(r["info"].get("error", ""))[:80] for r in out_list if not r["valid"])
            log.warning("RewardPool: %d/%d items invalid in %.2fs: %s", n_invalid, n, time.monotonic() - t0,
                        dict(errs.most_common(5)))
        return out_list

    def ping(self) -> list[dict]:
        return ray.get([a.ping.remote() for a in self._actors], timeout=self.cfg.startup_timeout_s)

    def close(self) -> None:
        """Kill this pool's actors (never the Ray cluster)."""
        self._closed = True
        for a in getattr(self, "_actors", []):
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._actors = []
        from ascl_ray.placement import remove

        remove(getattr(self, "_pg", None))
        self._pg = None

    def node_ids(self) -> list[str]:
        """The Ray node of every reward actor (placement tests)."""
        return [p["node_id"] for p in self.ping()]

    def __enter__(self) -> "RewardPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

