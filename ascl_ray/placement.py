"""Where the actors of a run go: one Ray placement group per actor group, planned from the typed config.

    plans = plan_actors(cfg)                         # pure: [RolePlan(learner), RolePlan(rollout), RolePlan(reward)]
    check_fits(plans, nodes)                         # pure: a stated cluster shape holds the plan, or PlacementError
    pg = place(plan, timeout_s)                      # Ray: reserve the bundles, or PlacementError naming them
    strategy = in_bundle(pg, i)                      # the scheduling strategy of actor i

Every group reserves one bundle per actor before any actor starts, so a cluster that cannot hold the plan is
an error naming the group, its bundle and the resource that is short, not an actor pending for good:

- learners: one bundle per ZeRO-3 rank, ``PACK`` (ranks share a node when they fit: the gradient
  reduce-scatter stays on the node); the rendezvous endpoint is probed inside rank 0's bundle
  (``endpoint_in_bundle``), so it is rank 0's node IP and a port free there;
- rollout engines: one bundle per engine; an engine with tensor parallelism gets all its GPUs in its one
  bundle (``rollout.num_gpus_per_worker == rollout.tensor_parallel_size``), so its TP ranks share a node
  and vLLM runs them as local processes;
- reward actors: one bundle per actor (CPU only).

Custom Ray resources per group (``learner.resources``, ``rollout.resources``, ``reward.resources``) pin a
group to the nodes that carry them (e.g. ``{learner_node: 1}`` on the nodes started with
``ray start --resources='{"learner_node": 8}'``). ``plan_actors`` and ``check_fits`` import no Ray: the
dry run of a recipe checks a cluster shape with them before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["PlacementError", "RolePlan", "plan_actors", "check_fits", "place", "in_bundle", "endpoint_in_bundle",
           "remove", "parse_shape", "describe", "learner_plan", "rollout_plan", "reward_plan"]


class PlacementError(RuntimeError):
    """A plan the cluster cannot hold; the message names the group, the bundle and the short resource."""


@dataclass(frozen=True)
class RolePlan:
    role: str                          # learner | rollout | reward (the config group whose keys size it)
    count: int                         # actors, one bundle each
    bundle: dict[str, float]           # resources of one actor's bundle
    strategy: str = "PACK"
    what: str = ""                     # what one actor is, for messages ("ZeRO-3 rank", "vLLM engine (TP 2)")
    keys: tuple[str, ...] = field(default=())   # the config keys that size the bundle, for messages

    def total(self) -> dict[str, float]:
        return {k: v * self.count for k, v in self.bundle.items()}


def _bundle(cpus: float, gpus: float, resources: Optional[dict]) -> dict[str, float]:
    b = {"CPU": float(cpus)}
    if gpus:
        b["GPU"] = float(gpus)
    b.update({k: float(v) for k, v in (resources or {}).items()})
    return b


def learner_plan(lc: Any) -> RolePlan:
    """One bundle per ZeRO-3 rank (``lc``: ``LearnerCfg``)."""
    return RolePlan("learner", int(lc.num_actors), _bundle(lc.num_cpus_per_actor, lc.num_gpus_per_actor, lc.resources),
                    "PACK", "ZeRO-3 rank", ("learner.num_actors", "learner.num_cpus_per_actor",
                                            "learner.num_gpus_per_actor", "learner.resources"))


def rollout_plan(rc: Any) -> RolePlan:
    """One bundle per vLLM engine, all its TP ranks' GPUs in it (``rc``: ``RolloutCfg``)."""
    tp = int(getattr(rc, "tensor_parallel_size", 1))
    return RolePlan("rollout", int(rc.num_workers), _bundle(rc.num_cpus_per_worker, rc.num_gpus_per_worker,
                                                             getattr(rc, "resources", None)),
                    "PACK", "vLLM engine" + (f" (TP {tp})" if tp > 1 else ""),
                    ("rollout.num_workers", "rollout.num_cpus_per_worker", "rollout.num_gpus_per_worker",
                     "rollout.resources"))


def reward_plan(wc: Any) -> RolePlan:
    """One CPU bundle per reward actor (``wc``: ``RewardPoolConfig``)."""
    return RolePlan("reward", int(wc.num_workers), _bundle(wc.num_cpus_per_worker, 0, getattr(wc, "resources", None)),
                    "PACK", "reward actor", ("reward.num_workers", "reward.num_cpus_per_worker", "", "reward.resources"))


def plan_actors(cfg: Any, learners: bool = True, rollout: bool = True, reward: bool = True) -> list[RolePlan]:
    """The bundles a run reserves (``cfg``: a ``TrainConfig``), in start order."""
    return ([learner_plan(cfg.learner)] if learners else []) + ([rollout_plan(cfg.rollout)] if rollout else []) + \
        ([reward_plan(cfg.reward)] if reward else [])


def describe(plans: list[RolePlan]) -> str:
    """One line per group: count x bundle, the total, the strategy."""
    lines = []
    for p in plans:
        tot = ", ".join(f"{k}={v:g}" for k, v in p.total().items())
        lines.append(f"{p.role:8s} {p.count} x {p.what or 'actor'} {_fmt(p.bundle)} -> {tot} ({p.strategy})")
    return "\n".join(lines)


def _fmt(b: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in b.items()) + "}"


def parse_shape(shape: str) -> list[dict[str, float]]:
    """A cluster shape as nodes: ``"2x8"`` (2 nodes x 8 GPUs, CPUs unbounded), ``"2x8:64"`` (64 CPUs per node),
    or ``"1x0:2"`` (one CPU-only node with 2 CPUs). Several kinds joined by ``+``: ``"1x0:16+2x8:96"``."""
    nodes: list[dict[str, float]] = []
    for part in shape.replace(" ", "").split("+"):
        try:
            n, rest = part.lower().split("x", 1)
            gpus, _, cpus = rest.partition(":")
            node = {"GPU": float(gpus), "CPU": float(cpus) if cpus else float("inf")}
            nodes += [dict(node) for _ in range(int(n))]
        except ValueError:
            raise ValueError(f"cluster shape {shape!r}: expected NODESxGPUS[:CPUS][+...], e.g. 2x8 or 2x8:64") from None
    if not nodes:
        raise ValueError(f"cluster shape {shape!r}: no nodes")
    return nodes


def check_fits(plans: list[RolePlan], nodes: list[dict[str, float]]) -> list[list[int]]:
    """Place every bundle on ``nodes`` (first fit, biggest bundles first; a PACK group tries the node its
    previous bundle went to first). Returns the node index of each bundle per plan, or raises
    ``PlacementError`` naming the group, the bundle and the resource that is short: a bundle larger than
    any node, a resource the cluster lacks in total, or a plan that does not pack."""
    free = [dict(n) for n in nodes]
    total = {k: sum(n.get(k, 0.0) for n in nodes) for n in nodes for k in n}
    need: dict[str, float] = {}
    for p in plans:
        for k, v in p.total().items():
            need[k] = need.get(k, 0.0) + v
    for k, v in need.items():
        if v > total.get(k, 0.0) + 1e-9:
            parts = ", ".join(f"{p.role} {p.total()[k]:g}" for p in plans if p.total().get(k))
            raise PlacementError(f"the plan needs {v:g} {k} ({parts}) but the cluster has {total.get(k, 0.0):g} {k} "
                                 f"({len(nodes)} nodes); lower {_keys_for(plans, k)}")
    for p in plans:
        for k, v in p.bundle.items():
            most = max(n.get(k, 0.0) for n in nodes)
            if v > most + 1e-9:
                raise PlacementError(f"{p.role}: one {p.what or 'actor'} needs {v:g} {k} on one node {_fmt(p.bundle)}, "
                                     f"but the largest node has {most:g} {k}; lower {_keys_for([p], k)}")
    order = sorted(((pi, bi) for pi, p in enumerate(plans) for bi in range(p.count)),
                   key=lambda ij: -sum(v for k, v in plans[ij[0]].bundle.items() if k != "CPU"))
    where: list[list[int]] = [[-1] * p.count for p in plans]
    last: dict[int, int] = {}
    for pi, bi in order:
        b = plans[pi].bundle
        cands = ([last[pi]] if pi in last else []) + list(range(len(free)))
        for ni in cands:
            if all(free[ni].get(k, 0.0) + 1e-9 >= v for k, v in b.items()):
                for k, v in b.items():
                    free[ni][k] = free[ni].get(k, 0.0) - v
                where[pi][bi] = last[pi] = ni
                break
        else:
            p = plans[pi]
            short = [k for k, v in b.items() if max(f.get(k, 0.0) for f in free) + 1e-9 < v]
            raise PlacementError(f"{p.role}: {p.what or 'actor'} {bi + 1} of {p.count} {_fmt(b)} fits on no node "
                                 f"after the bundles placed before it (short of {', '.join(short) or 'a node holding all of it'}); "
                                 f"free per node: {[_fmt(f) for f in free]}; lower {_keys_for([p], short[0] if short else 'CPU')}")
    return where


def _keys_for(plans: list[RolePlan], resource: str) -> str:
    out = []
    for p in plans:
        if resource in p.bundle:
            out.append(p.keys[0] if p.keys else p.role)
            k = {"CPU": 1, "GPU": 2}.get(resource, 3)
            if len(p.keys) > k and p.keys[k]:
                out.append(p.keys[k])
    return " or ".join(dict.fromkeys(out)) or "the group sizes"


# ---------------------------------------------------------------------------------------------- Ray side
def place(plan: RolePlan, timeout_s: float) -> Any:
    """Reserve ``plan``'s bundles in one placement group; ``PlacementError`` (naming the group, the bundle and
    the cluster's resources) when it is not placed within ``timeout_s`` (``cluster.placement_timeout_s``)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([dict(plan.bundle) for _ in range(plan.count)], strategy=plan.strategy)
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        keys = " / ".join(plan.keys) or plan.role
        raise PlacementError(
            f"{plan.role} placement: {plan.count} bundles of {plan.bundle} ({keys}) could not be placed within "
            f"{timeout_s:g}s (cluster.placement_timeout_s); the cluster has {ray.cluster_resources()}, "
            f"available now {ray.available_resources()}")
    return pg


def in_bundle(pg: Any, index: int) -> Any:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)


def endpoint_in_bundle(pg: Any, index: int = 0) -> tuple[str, int, str]:
    """(node IP, a port free there, node id) of the node that holds bundle ``index``: found by a task placed
    in that bundle (the driver's IP is wrong whenever the bundle is on another node)."""
    import ray

    global _endpoint_task
    if _endpoint_task is None:   # made here, not at import: the planning half of this module needs no Ray
        _endpoint_task = ray.remote(num_cpus=0)(_endpoint_here)
    return ray.get(_endpoint_task.options(scheduling_strategy=in_bundle(pg, index)).remote())


_endpoint_task: Any = None


def _endpoint_here() -> tuple[str, int, str]:
    import ray

    from ascl_ray.sync.collective import free_port

    return ray.util.get_node_ip_address(), free_port(), ray.get_runtime_context().get_node_id()


def remove(pg: Any) -> None:
    """Remove a placement group (its bundles' resources return to the cluster); None and repeats are fine."""
    if pg is None:
        return
    try:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(pg)
    except Exception:  # noqa: BLE001 - already removed, or Ray already down
        pass
