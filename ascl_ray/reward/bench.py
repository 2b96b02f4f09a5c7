"""Reward-pool throughput: the same mixed batch scored with 1 and with 2 ``RewardWorker`` actors.

    python -m ascl_ray.reward.bench [--items 600] [--repeats 3] [--judge refusal]

``run_bench() -> list[dict]`` returns one row per actor count: ``{"bench": "reward_pool", "actors", "items",
"judge", "seconds" (median of repeats), "items_per_s", "invalid", "mix", "data"}`` plus generic table columns
``name`` / ``value`` (= items_per_s) / ``unit`` / ``note``. The batch is built from the real
data when it is found (``$ASCL_DATA_DIR`` or ``<repo>/../shared/data``): GSM8K / MATH-500 reference solutions
(math rows) and XSTest GPT-4 completions (harmful / benign rows); otherwise a synthetic batch of the same mix.
Starts a private local Ray (2 CPUs) when none is running and shuts it down afterwards.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["run_bench", "build_batch"]


def _data_dir() -> Optional[Path]:
    repo = Path(__file__).resolve().parents[2]
    for c in (os.environ.get("ASCL_DATA_DIR"), repo.parent / "shared" / "data", "/work/shared/data"):
        if c and Path(c).is_dir():
            return Path(c)
    return None


def build_batch(n_items: int = 600, seed: int = 0) -> tuple[list[dict], str]:
    """A mixed batch: 1/3 math (half GSM8K, half MATH-500), 1/3 harmful, 1/3 benign_sensitive."""
    import random

    rng = random.Random(seed)
    d = _data_dir()
    n_math = n_items // 3
    n_safe = n_items - n_math
    items: list[dict] = []
    if d is not None and (d / "gsm8k" / "test.jsonl").is_file():
        gsm = [json.loads(x) for x in open(d / "gsm8k" / "test.jsonl", encoding="utf-8")]
        m5 = [json.loads(x) for x in open(d / "math500" / "test.jsonl", encoding="utf-8")]
        f = next((d / "xstest" / "model_completions").glob("*.csv"))
        xs = list(csv.DictReader(open(f, encoding="utf-8", newline="")))
        src = "real data (gsm8k, math500, xstest completions)"
        for i in range(n_math):
            if i % 2 == 0:
                r = gsm[rng.randrange(len(gsm))]
                items.append({"prompt_text": r["question"], "prompt_type": "math", "final_text": r["answer"],
                              "reference": r["answer"], "math_kind": "gsm8k"})
            else:
                r = m5[rng.randrange(len(m5))]
                items.append({"prompt_text": r["problem"], "prompt_type": "math", "final_text": r["solution"],
                              "reference": r["answer"], "math_kind": "math"})
        for i in range(n_safe):
            r = xs[rng.randrange(len(xs))]
            pt = "benign_sensitive" if not r["type"].startswith("contrast") else "harmful"
            items.append({"prompt_text": r["prompt"], "prompt_type": pt, "final_text": r["completion"] or "",
                          "reference": None, "math_kind": None})
    else:
        src = "synthetic"
        for i in range(n_math):
            a = rng.randrange(1000)
            items.append({"prompt_text": f"q{i}", "prompt_type": "math", "final_text": f"... #### {a}",
                          "reference": f"#### {a}", "math_kind": "gsm8k"})
        texts = ["Sorry, but I can't assist with that.", "Sure, here is a detailed answer. " * 20]
        for i in range(n_safe):
            items.append({"prompt_text": f"p{i}", "prompt_type": "harmful" if i % 2 else "benign_sensitive",
                          "final_text": texts[i % 2], "reference": None, "math_kind": None})
    for it in items:
        it.update(malformed_call=False, consulted=bool(rng.random() < 0.3))
    rng.shuffle(items)
    return items, src


def run_bench(n_items: int = 600, repeats: int = 3, judge: str = "refusal",
              judge_options: Optional[dict] = None, actor_counts=(1, 2)) -> list[dict]:
    import ray

    from ascl_ray.reward.pool import RewardPool

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    rows: list[dict[str, Any]] = []
    try:
        items, src = build_batch(n_items)
        for k in actor_counts:
            time.sleep(0.5)  # let the previous pool's actors release their CPUs
            free = float(ray.available_resources().get("CPU", 0.0)) or float(ray.cluster_resources().get("CPU", 1))
            cpu = max(0.01, min(1.0, round(free / k, 2)))
            with RewardPool({"num_workers": k, "num_cpus_per_worker": cpu, "judge": judge,
                             "judge_options": judge_options or {}}) as pool:
                pool.score(items[: 4 * k])  # warm-up (imports, judge and math helper start)
                times, invalid = [], 0
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    out = pool.score(items)
                    times.append(time.perf_counter() - t0)
                    invalid = sum(not o["valid"] for o in out)
            sec = statistics.median(times)
            ips = round(len(items) / sec, 1)
            rows.append({"bench": "reward_pool", "actors": k, "cpus_per_actor": cpu, "items": len(items),
                         "judge": judge, "seconds": round(sec, 3), "items_per_s": ips,
                         "invalid": invalid, "mix": "1/3 math, 1/3 harmful, 1/3 benign", "data": src,
                         # generic table columns (name / value / unit / note)
                         "name": f"{k} actor{'s' if k > 1 else ''}, judge={judge}", "value": ips,
                         "unit": "items/s", "note": f"{len(items)} items, median of {repeats}, {invalid} invalid"})
    finally:
        if started:
            ray.shutdown()
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ascl_ray.reward.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--judge", default="refusal")
    args = ap.parse_args(argv)
    for row in run_bench(args.items, args.repeats, args.judge):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
