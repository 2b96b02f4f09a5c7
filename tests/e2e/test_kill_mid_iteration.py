"""Actors killed INSIDE an iteration of a real ``ascl-ray train`` run (real Ray + vLLM + DeepSpeed ZeRO-3 over
gloo, the tiny model, the driver a subprocess as a user starts it).

tests/e2e/test_resume.py kills actors between the driver's calls; here the kills land while an iteration
runs (as soon as, or a fraction of a second after, the checkpoint that precedes it is complete, so during
its rollout or its update): a learner rank in iteration 1 (-> the driver rebuilds the actors, reloads that
checkpoint, re-runs the iteration), a reward actor in iteration 2 and a rollout worker in iteration 4 (->
replaced inside their groups, or, if the rollout kill lands in a weight sync, a rebuild like the learner's).
The run must finish every iteration exactly once, with every kill accounted for in the metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ascl_ray.resources import descendants

pytestmark = pytest.mark.slow

N = 5
ARGS = ["data.prompts_per_iter=4", "rollout.n_samples=4", "trainer.save_every=1", "trainer.keep_checkpoints=2",
        f"trainer.iterations={N}", "trainer.max_failures=3", "tracking.progress=false",
        "tracking.wandb_mode=disabled"]


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def _actor_pids(root: int, cls: str) -> list[int]:
    """Processes under the driver whose title Ray set to ``ray::<cls>`` (idle) or ``ray::<cls>.<method>``."""
    return sorted(p for p in descendants(root) if _title(p).split(".")[0] == f"ray::{cls}")


def _wait_for(path: Path, p: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert p.poll() is None, f"the run ended before {path.name}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.02)


def test_kill_learner_rollout_and_reward_actors_inside_iterations(tiny_model_path, tmp_path):
    out, log = tmp_path / "run", tmp_path / "train.log"
    cmd = [sys.executable, "-m", "ascl_ray.cli", "train", f"model.path={tiny_model_path}", f"trainer.out_dir={out}",
           *ARGS]
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    kills: list[tuple[str, int, int]] = []
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        # checkpoint iter-K is written right before iteration K starts; kill shortly after it is complete
        for k, cls, delay in ((1, "LearnerActor", 0.3), (2, "RewardWorker", 0.0), (4, "RolloutWorker", 0.0)):
            _wait_for(out / "checkpoints" / f"iter-{k:06d}" / "COMPLETE", p, log)
            time.sleep(delay)
            pids = _actor_pids(p.pid, cls)
            assert pids, f"no {cls} process under the driver: {[(q, _title(q)) for q in descendants(p.pid)]}"
            os.kill(pids[-1], signal.SIGKILL)
            kills.append((cls, k, pids[-1]))
        rc = p.wait(timeout=600)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    assert rc == 0, f"rc {rc}:\n{log.read_text()[-6000:]}"
    print("killed:", kills)

    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(N)), "every iteration exactly once"
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "final" / "model.safetensors").exists()
    # the learner kill is always a failure (the group cannot lose a rank); the iteration it hit was re-run
    assert summary["failures"] >= 1 and rows[1]["trainer/failures"] >= 1.0
    # the reward actor (iteration 2): replaced or restarted inside the pool, its shard rescored
    assert max(r["trainer/reward_actor_deaths"] for r in rows[2:]) >= 1.0
    # the rollout worker (iteration 4): replaced inside its group and its shard generated again, or, if the kill
    # landed in the weight sync, one more rebuild and a re-run of the iteration
    assert rows[4]["trainer/rollout_restarts"] >= 1.0 or summary["failures"] >= 2
    assert all(r["reward/invalid"] == 0.0 for r in rows)
    text = log.read_text()
    assert "actor failure 1/3" in text
