"""The RL loop, top to bottom:

    for it in range(iterations):
        prompts  = sampler.next_batch()                 # PromptRows with explicit group ids
        rollouts = rollout.generate(prompts)            # vLLM workers run the tool turn
        rewards  = reward_pool.score(rollouts)          # verifiers + judges, timeouts
        adv      = estimator(rewards, group_ids, modes) # algo/ (pure), e.g. IFPO
        stats    = learners.update(rollouts)            # DeepSpeed ZeRO-3
        sync.push(learners -> rollout); verify_sync()   # every iteration, verified
        tracker.log(...)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from ascl_ray.batch import PromptRow, Rollout
from ascl_ray.config import TrainConfig, to_dict
from ascl_ray.data.sampler import PromptSampler
from ascl_ray.failures import actor_errors, dead_actors, group_actors, is_actor_failure  # noqa: F401  (actor_errors re-exported)
from ascl_ray.metrics import group_metrics
from ascl_ray.runtime import ensure_model, load_prompts, score, start_ray  # noqa: F401  (re-exported)
from ascl_ray.sync.verify import ProbeVerifier, resolve_mode

log = logging.getLogger("ascl_ray")


def compute_advantages(cfg: TrainConfig, rollouts: list[Rollout], state: dict) -> dict[str, float]:
    """Set each rollout's advantage with the configured estimator; its metrics out, its ``state`` updated
    in place (the estimator owns both: the driver never checks which estimator runs)."""
    import torch

    from ascl_ray import algo

    out = algo.estimate(cfg.algorithm.name,
                        torch.tensor([r.reward for r in rollouts], dtype=torch.float32),
                        torch.tensor([r.group_id for r in rollouts], dtype=torch.long),
                        torch.tensor([r.consulted for r in rollouts], dtype=torch.bool),
                        options=dict(cfg.algorithm.options), state=state,
                        prompt_types=[r.prompt.prompt_type for r in rollouts])
    for r, a in zip(rollouts, out.advantages.tolist()):
        r.advantage = float(a)
    return out.metrics


def batch_record(rollouts: list[Rollout]) -> dict[str, list]:
    """What one iteration trained on, for ``batches.jsonl``: the prompt id and group id of each group (in
    batch order) and a short digest of each rollout's tokens, mask and sampling log-probs (exact floats), so
    two runs (e.g. straight vs resumed) can be compared prompt by prompt and rollout by rollout without
    storing the rollouts."""
    import hashlib

    prompts, gids = [], []
    for r in rollouts:
        if not gids or gids[-1] != r.group_id:
            prompts.append(r.prompt.prompt_id)
            gids.append(r.group_id)
    digest = [hashlib.sha256(json.dumps([r.prompt_ids, r.response_ids, r.loss_mask, r.rollout_logprobs])
                             .encode()).hexdigest()[:16] for r in rollouts]
    return {"prompt_ids": prompts, "group_ids": gids, "rollouts": digest}


def ahead_to_json(ahead: Optional[dict]) -> Optional[dict]:
    """The batch generated ahead of a checkpoint (collected), as JSON for the trainer state."""
    if ahead is None:
        return None
    from dataclasses import asdict

    return {"it": ahead["it"], "version": ahead["version"], "rollouts": [asdict(r) for r in ahead["rollouts"]]}


def ahead_from_json(d: Optional[dict]) -> Optional[dict]:
    if not d:
        return None
    rollouts = [Rollout(**{**r, "prompt": PromptRow(**r["prompt"])}) for r in d["rollouts"]]
    return {"it": int(d["it"]), "version": int(d["version"]), "rollouts": rollouts}


def probe_sequences(tok: Any, rows: list[PromptRow], system_text: Optional[str]) -> list[list[int]]:
    from ascl_ray.rollout.chat import encode_segment, prompt_ids

    return [prompt_ids(tok, r.text, system_text) + encode_segment(tok, "Sure. 2 + 2 = 4. #### 4") for r in rows[:2]]


class Trainer:
    """Owns the runtime stack of one run. ``train()`` below is setup + ``step()`` per iteration + finish."""

    def __init__(self, cfg: TrainConfig):
        from transformers import AutoTokenizer

        from ascl_ray.registry import import_plugins
        from ascl_ray.rollout.method import build_context

        self.cfg = cfg
        self.t_start = time.perf_counter()
        import_plugins(cfg.algorithm.plugins)                 # the estimator may be a plugin's
        self.train_rows, self.eval_rows = load_prompts(cfg)   # bad rows fail here, before anything heavy
        self.model_path = ensure_model(cfg)
        self.out_dir = Path(cfg.trainer.out_dir)
        self.cfg_dict = to_dict(cfg)
        self.tok = AutoTokenizer.from_pretrained(self.model_path)
        ctx = build_context(cfg.method, tokenizer=self.tok)
        self.probes = probe_sequences(self.tok, self.train_rows, ctx.system_text)
        t, r, lc = cfg.trainer, cfg.rollout, cfg.learner
        self.verifier = ProbeVerifier(resolve_mode(t.sync_verify, r.dtype, lc.dtype, lc.backend), t.sync_tol,
                                      t.sync_tol_factor, t.sync_tol_max)
        self.stack: Any = None
        self.tracker: Any = None
        self.sampler = PromptSampler(self.train_rows, cfg.data.prompts_per_iter, cfg.trainer.seed)
        self.adv_state: dict = {}     # the advantage estimator's state across iterations (e.g. IFPO's EMA)
        self.start_it = 0             # the first iteration to run (> 0 after a resume)
        self.failures = 0             # actor deaths survived so far
        self.resumed_from: Optional[str] = None
        self.resumed_at = 0
        from ascl_ray.overlap import Schedule

        # rollout/training overlap (trainer.mode): when to launch a generation early and when to sync
        self.schedule = Schedule.of(cfg.trainer.mode, cfg.trainer.max_staleness, cfg.trainer.iterations)
        self.ahead: Optional[dict] = None   # the next batch, launched early: {it, version, handle | rollouts}

    # the stack's parts, by name (the loop below reads them)
    learners = property(lambda self: self.stack.learners if self.stack else None)
    rollout = property(lambda self: self.stack.rollout if self.stack else None)
    pool = property(lambda self: self.stack.pool if self.stack else None)
    sync = property(lambda self: self.stack.sync if self.stack else None)

    def setup(self) -> "Trainer":
        from ascl_ray.checkpoint import check_resume_config, load_trainer_state, resolve_resume, resume_keys
        from ascl_ray.runtime import build_stack
        from ascl_ray.tracking import Tracker

        cfg, d = self.cfg, self.cfg_dict
        resume = resolve_resume(cfg.trainer.resume, self.out_dir)    # a bad PATH fails before any actor
        if resume is not None:                                       # so does a config that breaks resume
            check_resume_config(load_trainer_state(resume, restore=False)["resume_keys"], resume_keys(d))
        t0 = time.perf_counter()
        self.stack = build_stack(cfg, self.model_path)
        self.startup_s = time.perf_counter() - t0
        log.info("actors up in %.1fs", self.startup_s)
        state = self._restore(resume) if resume is not None else None
        self.resumed_at = self.start_it
        self.schedule.synced(self.start_it)     # the engines hold the learner's weights now
        self._verify()     # the engine must run exactly the learner's weights before the first step
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(d, indent=2))
        self.tracker = Tracker(str(self.out_dir), d, mode=cfg.tracking.wandb_mode, project=cfg.tracking.project,
                               run_name=cfg.tracking.run_name, progress=cfg.tracking.progress,
                               total=cfg.trainer.iterations,
                               resume_step=self.start_it if state is not None else None,
                               wandb_id=(state or {}).get("wandb_id"))
        return self

    def _verify(self) -> dict[str, float]:
        """The probe check of ``ascl_ray.sync.verify`` (its metrics), or nothing with verify_sync off."""
        from ascl_ray.sync.channels import probe, probe_in_parallel

        if not self.cfg.trainer.verify_sync:
            return {}
        parallel = probe_in_parallel(self.cfg.learner.num_gpus_per_actor, self.cfg.rollout.num_gpus_per_worker)
        return self.verifier.check(*probe(self.learners, self.rollout, self.probes, parallel=parallel))

    # ------------------------------------------------------------------ checkpoints, resume, failures
    def save_checkpoint(self, iteration: int) -> str:
        """Full state after ``iteration`` completed iterations, atomically, keeping the newest
        ``trainer.keep_checkpoints``: the learners' ZeRO-3 parameters + optimizer (+ each rank's torch RNG),
        an HF export (``hf/``), the sampler, the estimator state, the driver's RNGs, the tracker's wandb id,
        the config digest and the keys a resume must not change."""
        from ascl_ray.checkpoint import config_digest, resume_keys, save_trainer_state, write_checkpoint

        self._collect_ahead()     # a batch generated ahead is saved with the checkpoint and reused on resume

        def write(tmp: Path) -> None:
            self.learners.save_checkpoint(str(tmp / "learner"))
            self.learners.save_hf(str(tmp / "hf"))
            save_trainer_state(tmp, {
                "iteration": iteration, "sampler": self.sampler.state_dict(), "estimator_state": self.adv_state,
                "ahead": ahead_to_json(self.ahead),
                "wandb_id": self.tracker.wandb_id if self.tracker is not None else None,
                "failures": self.failures, "config_digest": config_digest(self.cfg_dict),
                "resume_keys": resume_keys(self.cfg_dict)})

        path = write_checkpoint(self.out_dir, iteration, write, keep=self.cfg.trainer.keep_checkpoints)
        log.info("checkpoint after %d iterations: %s", iteration, path)
        return str(path)

    def _restore(self, folder: Path) -> dict:
        """Load a full-state checkpoint into the running stack; the engines get the restored weights."""
        from ascl_ray.checkpoint import check_resume_config, load_trainer_state, resume_keys

        state = load_trainer_state(folder)
        check_resume_config(state["resume_keys"], resume_keys(self.cfg_dict))
        self.learners.load_checkpoint(str(Path(folder) / "learner"))
        self.sampler.load_state_dict(state["sampler"])
        self.adv_state = dict(state["estimator_state"])
        self.start_it = int(state["iteration"])
        self.failures = int(state.get("failures", 0))
        self.ahead = ahead_from_json(state.get("ahead"))   # the batch generated ahead of the checkpoint, reused
        self.sync.push(self.learners, self.rollout)
        self.schedule.synced(self.start_it)
        self.resumed_from = str(folder)
        log.info("resumed from %s at iteration %d", folder, self.start_it)
        return state

    def recover(self, err: BaseException) -> int:
        """An actor died: rebuild the actors, reload the newest checkpoint (none: the initial weights and
        state), drop the metrics of the iterations to re-run; returns the iteration to continue from.
        More than ``trainer.max_failures`` failures re-raise."""
        from ascl_ray.checkpoint import list_checkpoints
        from ascl_ray.runtime import build_stack

        self.failures += 1
        log.error("actor failure %d/%d (%s: %s)", self.failures, self.cfg.trainer.max_failures,
                  type(err).__name__, str(err).splitlines()[0][:300] if str(err) else "")
        if self.failures > self.cfg.trainer.max_failures:
            raise err
        started = self.stack.started_ray
        self.ahead = None          # a generation in flight belonged to the dead stack; the checkpoint has its own
        self.stack.close(keep_ray=True)
        self.stack = build_stack(self.cfg, self.model_path)
        self.stack.started_ray = started or self.stack.started_ray
        ckpts = list_checkpoints(self.out_dir)
        if ckpts:
            failures = self.failures
            self._restore(ckpts[-1][1])
            self.failures = failures
        else:     # no checkpoint yet: the fresh actors hold the initial weights; start over
            self.sampler = PromptSampler(self.train_rows, self.cfg.data.prompts_per_iter, self.cfg.trainer.seed)
            self.adv_state, self.start_it = {}, 0
            self.schedule.synced(0)
        self._verify()
        self.tracker.rewind(self.start_it)
        return self.start_it

    def step(self, it: int) -> dict[str, float]:
        from ascl_ray.tracking import PHASES, PhaseTimer

        cfg = self.cfg
        timer = PhaseTimer()
        t_it = time.perf_counter()
        with timer("rollout"):       # in overlap modes: only the part of the generation not hidden by training
            rollouts, version = self._batch(it)
        if self.schedule.launch_early(it):           # generation of it + 1 runs while the learners train on it
            self.ahead = self._launch(it + 1)
        with timer("reward"):
            score(self.pool, rollouts)
        extra: dict[str, float] = {}
        if cfg.algorithm.dynamic_sampling:
            rollouts, extra = self._dynamic_sampling(rollouts, it, timer)
        for r in rollouts:
            r.policy_version = version
        with timer("advantage"):
            metrics = compute_advantages(cfg, rollouts, self.adv_state)
            metrics.update(group_metrics(rollouts))
            metrics.update(extra)
        metrics["overlap/staleness"] = float(it - version)       # learner updates since the sampling weights
        with timer("train"):
            metrics.update(self.learners.update(rollouts))
        rep = None
        if self.schedule.sync_after(it, in_flight=self.ahead is not None):
            with timer("rollout"):
                self._collect_ahead()                # a sync never runs under a generation
            with timer("sync"):
                rep = self.sync.push(self.learners, self.rollout)
                self.schedule.synced(it + 1)
                t_verify = time.perf_counter()
                metrics.update(self._verify())
                metrics["sync/verify_seconds"] = time.perf_counter() - t_verify
        metrics["overlap/synced"] = float(rep is not None)
        metrics["overlap/engine_version"] = float(self.schedule.engine_version)
        step = time.perf_counter() - t_it
        for ph in PHASES:
            metrics[f"timing/{ph}"] = timer.times.get(ph, 0.0)
            self.tracker.phase_done(ph, timer.times.get(ph, 0.0))
        metrics["timing/step"] = step
        metrics["trainer/failures"] = float(self.failures)           # rebuilds after a dead actor (learners)
        metrics["trainer/rollout_restarts"] = float(getattr(self.rollout, "restarts", 0))   # workers replaced
        stats = getattr(self.pool, "stats", {}) or {}
        metrics["trainer/reward_actor_deaths"] = float(stats.get("actor_deaths", 0) + stats.get("actor_restarts", 0))
        work = sum(timer.times.get(p, 0.0) for p in ("rollout", "reward", "train", "sync"))
        metrics["timing/overhead_frac"] = max(0.0, step - work) / step
        if rep is not None:
            metrics.update({"sync/bytes": rep.n_bytes, "sync/seconds": rep.seconds,
                            "sync/MBps": rep.n_bytes / 1e6 / max(rep.seconds, 1e-9),
                            "sync/load_seconds": rep.load_seconds, "sync/export_seconds": rep.export_seconds})
        self.tracker.log(metrics, step=it, batch=batch_record(rollouts))
        return metrics

    def _gen_seed(self, it: int, refill_round: int = 0) -> int:
        """The sampling seed of iteration ``it``'s generation (``refill_round`` > 0: a dynamic-sampling refill)."""
        return self.cfg.trainer.seed * 100_003 + it + 7919 * refill_round

    # ------------------------------------------------------------------ overlap (ascl_ray/overlap.py)
    def _launch(self, it: int) -> dict:
        """Draw batch ``it``'s prompts and start its generation with the engines' current weights."""
        rows, gids = self.sampler.next_batch()
        handle = self.rollout.generate_async(rows, gids, seed=self._gen_seed(it))
        return {"it": it, "version": self.schedule.engine_version, "handle": handle}

    def _collect_ahead(self) -> None:
        """Wait for the batch generated ahead (if any is in flight) and keep its rollouts for its iteration."""
        if self.ahead is not None and "handle" in self.ahead:
            self.ahead["rollouts"] = self.rollout.collect(self.ahead.pop("handle"))

    def _batch(self, it: int) -> tuple[list[Rollout], int]:
        """Batch ``it`` and the engine version that generated it: the one launched ahead, or generated now."""
        if self.ahead is not None:
            if self.ahead["it"] != it:
                raise RuntimeError(f"overlap: the batch generated ahead is for iteration {self.ahead['it']}, "
                                   f"the loop is at {it}")
            self._collect_ahead()
            ahead, self.ahead = self.ahead, None
            return ahead["rollouts"], int(ahead["version"])
        rows, gids = self.sampler.next_batch()
        version = self.schedule.engine_version
        return self.rollout.generate(rows, gids, seed=self._gen_seed(it)), version

    def _dynamic_sampling(self, rollouts: list[Rollout], it: int, timer: Any) -> tuple[list[Rollout], dict]:
        """DAPO: drop groups whose rewards are all equal; refill with fresh groups (up to
        ``algorithm.dynamic_sampling_max_rounds`` extra rounds), else pad with dropped groups so the
        batch keeps its size (their advantages are 0)."""
        import torch

        from ascl_ray import algo

        want = self.cfg.data.prompts_per_iter
        kept: dict[int, list[Rollout]] = {}
        dropped: dict[int, list[Rollout]] = {}
        rounds = 0
        while True:
            keep = algo.filter_uniform_groups(torch.tensor([r.reward for r in rollouts]),
                                              torch.tensor([r.group_id for r in rollouts]))
            for r, k in zip(rollouts, keep.tolist()):
                (kept if k else dropped).setdefault(r.group_id, []).append(r)
            if len(kept) >= want or rounds >= self.cfg.algorithm.dynamic_sampling_max_rounds:
                break
            rounds += 1
            rows, gids = self.sampler.next_batch()
            with timer("rollout"):
                rollouts = self.rollout.generate(rows, gids, seed=self._gen_seed(it, rounds))
            with timer("reward"):
                score(self.pool, rollouts)
        groups = list(kept.values())[:want]
        n_informative = len(groups)
        groups += list(dropped.values())[: want - len(groups)]
        out = [r for g in groups for r in g]
        return out, {"dynamic_sampling/informative_groups": n_informative / want,
                     "dynamic_sampling/extra_rounds": float(rounds)}

    def save(self, name: str) -> str:
        return self.learners.save_hf(str(self.out_dir / name))

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        if self.stack is not None:
            self.stack.close()
            self.stack = None


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the loop (from the newest checkpoint with ``trainer.resume=auto``); returns a summary (history,
    paths). An actor death is survived up to ``trainer.max_failures`` times; a failed sync verification
    is never retried (it raises)."""
    tr = Trainer(cfg)
    try:
        tr.setup()
        n, every = cfg.trainer.iterations, cfg.trainer.save_every
        it = tr.start_it
        while it < n:
            try:
                tr.step(it)
            except Exception as e:  # noqa: BLE001 - an actor's death (or a peer's error from it) is survived
                if not is_actor_failure(e, lambda: dead_actors(group_actors(tr.stack))):
                    raise
                it = tr.recover(e)
                continue
            it += 1
            if every and (it % every == 0 or it == n):
                tr.save_checkpoint(it)
        final = tr.save("final")
        plot = tr.tracker.plot()
        summary = {"history": tr.tracker.history, "final_checkpoint": final, "plot": plot,
                   "startup_s": tr.startup_s, "total_s": time.perf_counter() - tr.t_start, "out_dir": str(tr.out_dir),
                   "resumed_from": tr.resumed_from, "resumed_at": tr.resumed_at, "failures": tr.failures}
        (tr.out_dir / "summary.json").write_text(
            json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
        return summary
    finally:
        tr.close()
