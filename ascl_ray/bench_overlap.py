"""``make bench`` rows for rollout/training overlap: the step time of ``trainer.mode=sync`` vs ``one_step_off`` vs
``async`` from one run, side by side (issue 13).

On a CPU box overlap is only real when generation and training do not share cores, so every arm pins the vLLM
engine to one set of cores and the learner to another (``rollout.cpu_affinity``, ``learner.cpu_affinity``; one
learner rank with the remaining cores). The arms run interleaved (sync, one_step_off, async, async,
one_step_off, sync) so drift of the machine hits every arm alike; each row is the median of the measured
steps (the first ``warmup`` of each run dropped) over both runs of an arm.

    python -m ascl_ray.bench_overlap                      # the tiny default task, 8 iterations per run
    python -m ascl_ray.bench_overlap --iterations 6 rollout.max_new_tokens=64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

from ascl_ray.bench_table import _row, format_table

MODES = ("sync", "one_step_off", "async")
# the work: the tiny default task with one optimizer step per iteration on 8 prompts, where generation and
# training take about the same time on this 2-core box (the case overlap is for: it hides the shorter phase)
WORK = ["learner.epochs=1", "learner.num_mini_batches=1", "data.prompts_per_iter=8"]
ORDER = ("sync", "one_step_off", "async", "async", "one_step_off", "sync")


def pinning_overrides(n_cores: Optional[int] = None) -> list[str]:
    """Engine on core 0, one learner rank on the others (its threads = their count); reward actors and the
    driver are left to the OS (they are light)."""
    n = n_cores or os.cpu_count() or 2
    if n < 2:
        raise RuntimeError("bench_overlap: needs at least 2 cores (generation and training on separate cores)")
    learner = list(range(1, n))
    return ["rollout.cpu_affinity=[0]", f"learner.cpu_affinity=[{','.join(map(str, learner))}]",
            "learner.num_actors=1", f"learner.torch_threads={len(learner)}"]


def step_medians(history: list[dict], warmup: int) -> dict[str, float]:
    """Median per phase over the measured iterations (the first ``warmup`` dropped)."""
    rows = history[warmup:]
    if not rows:
        raise ValueError(f"bench_overlap: {len(history)} iterations leave none after {warmup} warm-up ones")
    keys = ("timing/step", "timing/rollout", "timing/train", "timing/sync", "timing/reward")
    return {k: statistics.median(h.get(k, 0.0) for h in rows) for k in keys}


def rows_for(results: dict[str, list[list[dict]]], warmup: int) -> list[dict]:
    """Bench rows: per arm the medians over all its runs' measured steps, and the speed-up against sync."""
    med = {m: step_medians([h for run in runs for h in run[warmup:]], 0) for m, runs in results.items()}
    out = []
    for m in MODES:
        if m not in med:
            continue
        d = med[m]
        stale = max((h.get("overlap/staleness", 0.0) for run in results[m] for h in run), default=0.0)
        out.append(_row("overlap (tiny, engine and learner on separate cores)", f"{m}: step", d["timing/step"], "s",
                        f"exposed rollout {d['timing/rollout']:.2f} s, train {d['timing/train']:.2f} s, "
                        f"sync {d['timing/sync']:.2f} s; max staleness {stale:g}"))
    if "sync" in med:
        for m in MODES[1:]:
            if m in med:
                out.append(_row("overlap (tiny, engine and learner on separate cores)", f"{m} speed-up vs sync",
                                med["sync"]["timing/step"] / med[m]["timing/step"], "x", "target >= 1.4x (one_step_off)"))
    return out


def run_arm(mode: str, overrides: list[str], iterations: int, work: str) -> list[dict]:
    from ascl_ray.cli import compose
    from ascl_ray.driver import train

    Path(work).mkdir(parents=True, exist_ok=True)
    out = tempfile.mkdtemp(prefix=f"overlap-{mode}-", dir=work)
    cfg = compose([f"trainer.mode={mode}", "trainer.max_staleness=2", f"trainer.iterations={iterations}",
                   f"trainer.out_dir={out}", "trainer.resume=never", "tracking.wandb_mode=disabled",
                   "tracking.progress=false", *WORK, *pinning_overrides(), *overrides])
    return train(cfg)["history"]


def bench_overlap(overrides: Optional[list[str]] = None, iterations: int = 8, warmup: int = 2,
                  work: str = "runs/bench") -> list[dict]:
    Path(work).mkdir(parents=True, exist_ok=True)
    results: dict[str, list[list[dict]]] = {}
    for mode in ORDER:
        t = time.perf_counter()
        results.setdefault(mode, []).append(run_arm(mode, list(overrides or []), iterations, work))
        print(f"[bench_overlap] {mode}: {time.perf_counter() - t:.0f}s", flush=True)
    Path(work, "overlap.json").write_text(json.dumps(results))
    return rows_for(results, warmup)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = bench_overlap(a.overrides, a.iterations, a.warmup, a.out)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
