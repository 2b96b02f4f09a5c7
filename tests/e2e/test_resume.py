"""Surviving runs end to end (real Ray + vLLM + DeepSpeed ZeRO-3 over gloo, the tiny model):

1. a run with ``trainer.save_every=1`` writes full-state checkpoints (ZeRO-3 params + optimizer, sampler,
   RNGs, estimator state) atomically and keeps the newest ``keep_checkpoints``;
2. a second run in the same folder (``trainer.resume=auto``, more iterations) continues from the newest one;
3. during that run a rollout worker and a reward actor are killed (SIGKILL): replaced in their groups, the
   iteration completes, the counts are in the metrics; then a learner process is killed: the driver rebuilds
   the actors, reloads the checkpoint, re-runs the interrupted iteration and finishes; metrics.jsonl has every
   step exactly once.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

pytestmark = pytest.mark.slow

SMALL = ["data.prompts_per_iter=4", "rollout.n_samples=4", "tracking.progress=false", "tracking.wandb_mode=disabled"]


def _steps(out):
    return [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_checkpoint_resume_and_learner_death(tiny_model_path, tmp_path):
    from ascl_ray.checkpoint import list_checkpoints, load_trainer_state
    from ascl_ray.cli import compose
    from ascl_ray.driver import Trainer, actor_errors, train

    out = tmp_path / "run"
    base = [f"model.path={tiny_model_path}", f"trainer.out_dir={out}", "trainer.save_every=1",
            "trainer.keep_checkpoints=2", *SMALL]
    first = train(compose(base + ["trainer.iterations=3"]))
    assert first["resumed_from"] is None and _steps(out) == [0, 1, 2]
    ckpts = list_checkpoints(out)
    assert [i for i, _ in ckpts] == [2, 3]                           # keep the newest 2
    st = load_trainer_state(ckpts[-1][1])
    assert st["iteration"] == 3 and st["sampler"]["next_gid"] == 3 * 4
    assert (ckpts[-1][1] / "hf" / "model.safetensors").exists()
    assert not [p for p in (out / "checkpoints").iterdir() if "tmp" in p.name]   # nothing half-written

    # resume (auto) with three more iterations; kill workers during the first, a learner rank during the last
    tr = Trainer(compose(base + ["trainer.iterations=6"]))
    try:
        tr.setup()
        assert tr.start_it == 3 and tr.resumed_from == str(ckpts[-1][1])
        assert tr.sampler.state_dict()["next_gid"] == 12                # no prompt skipped or replayed
        tr.step(3)
        # kill -9 of a rollout worker and of a reward actor mid-run: replaced inside their groups, no rewind
        os.kill(tr.rollout.pids()[0], signal.SIGKILL)
        os.kill(tr.pool.ping()[0]["pid"], signal.SIGKILL)
        m4 = tr.step(4)
        assert m4["trainer/rollout_restarts"] == 1.0 and m4["trainer/reward_actor_deaths"] == 1.0
        assert m4["trainer/failures"] == 0.0 and m4["reward/invalid"] == 0.0
        tr.save_checkpoint(5)
        os.kill(tr.learners.pids()[1], signal.SIGKILL)
        with pytest.raises(actor_errors()):
            tr.step(5)
        assert tr.recover(RuntimeError("learner rank 1 killed")) == 5     # the newest checkpoint: iteration 5
        assert tr.failures == 1
        m = tr.step(5)
        assert m["trainer/failures"] == 1.0
    finally:
        tr.close()
    assert _steps(out) == [0, 1, 2, 3, 4, 5]                          # every step once, none missing
