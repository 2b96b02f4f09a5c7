"""``ascl-ray train --dry-run``: the validated config's batch arithmetic and actor plan, checked against a
cluster shape, with nothing started (no Ray, no model read: the model folder need not exist here).

    text, error = report(cfg, shape="2x8:64")    # error: None, or why the plan does not fit the shape
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from ascl_ray.placement import PlacementError, check_fits, parse_shape, plan_actors


def _fmt(b: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in b.items()) + "}"


def _batch_lines(cfg: Any) -> list[str]:
    d, r, l = cfg.data, cfg.rollout, cfg.learner
    rows = d.prompts_per_iter * r.n_samples
    per_mini = rows // (l.num_actors * l.num_mini_batches)
    ga = cfg.grad_accum
    engines = r.num_workers
    return [
        f"batch    data.prompts_per_iter={d.prompts_per_iter} x rollout.n_samples={r.n_samples} = {rows} rows per "
        f"iteration = learner.num_actors={l.num_actors} ranks x learner.num_mini_batches={l.num_mini_batches} x "
        f"{per_mini} rows",
        f"         per rank and optimizer step: {per_mini} rows in {ga} micro-batch(es) of <= "
        f"{-(-per_mini // ga)} (learner.micro_batch_size={l.micro_batch_size}); "
        f"{l.epochs * l.num_mini_batches} optimizer step(s) per iteration (learner.epochs={l.epochs})",
        f"rollout  {d.prompts_per_iter} prompts over {engines} engine(s) (~{-(-d.prompts_per_iter // engines)} each), "
        f"max_new_tokens={r.max_new_tokens}, max_model_len={r.max_model_len}, dtype={r.dtype}; "
        f"weight sync trainer.sync_channel={cfg.trainer.sync_channel}",
    ]


def report(cfg: Any, shape: Optional[str] = None) -> tuple[str, Optional[str]]:
    """(plan text, None) or (plan text, error) when the plan does not fit ``shape`` (default
    ``cluster.shape``). Pure: imports no Ray, reads no model."""
    shape = shape if shape is not None else getattr(cfg.cluster, "shape", None)
    plans = plan_actors(cfg)
    lines = ["dry run: config valid; nothing started (no Ray, no model loaded)",
             f"model    {cfg.model.name} at {cfg.model.path} (not read here; a cluster needs it on every node)"]
    lines += _batch_lines(cfg)
    where: Optional[list[list[int]]] = None
    error: Optional[str] = None
    nodes: list[dict[str, float]] = []
    if shape:
        nodes = parse_shape(shape)
        try:
            where = check_fits(plans, nodes)
        except PlacementError as e:
            error = f"cluster shape {shape}: does not fit: {e}"
    tp = cfg.rollout.tensor_parallel_size
    lines.append("plan     one placement group per group (PACK), one bundle per actor:")
    head = f"  {'group':8s} {'actors':>6s}  {'bundle per actor':28s} {'TP':>3s}  {'total':24s} nodes"
    lines.append(head)
    for i, p in enumerate(plans):
        tot = ", ".join(f"{k}={v:g}" for k, v in p.total().items())
        if where is not None:
            placed = ", ".join(f"node{n} x{c}" for n, c in sorted(Counter(where[i]).items()))
        else:
            placed = "(no shape checked)" if not shape else "-"
        tcol = str(tp) if p.role == "rollout" else "-"
        lines.append(f"  {p.role:8s} {p.count:>6d}  {_fmt(p.bundle):28s} {tcol:>3s}  {tot:24s} {placed}")
    need: dict[str, float] = {}
    for p in plans:
        for k, v in p.total().items():
            need[k] = need.get(k, 0.0) + v
    lines.append("  total    " + ", ".join(f"{k}={v:g}" for k, v in sorted(need.items())))
    if not shape:
        lines.append("shape    none given (--cluster-shape NODESxGPUS[:CPUS] or cluster.shape): fit not checked")
    elif error is None:
        kinds = Counter((n["GPU"], n["CPU"]) for n in nodes)
        desc = " + ".join(f"{c} node(s) x {g:g} GPU, {'any' if cpu == float('inf') else f'{cpu:g}'} CPU"
                          for (g, cpu), c in kinds.items())
        lines.append(f"shape    {shape} ({desc}): fits")
    return "\n".join(lines), error
