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
from ascl_ray.metrics import group_metrics
from ascl_ray.runtime import ensure_model, load_prompts, score, start_ray  # noqa: F401  (re-exported)

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
        self.stack: Any = None
        self.tracker: Any = None
        self.sampler = PromptSampler(self.train_rows, cfg.data.prompts_per_iter, cfg.trainer.seed)
        self.adv_state: dict = {}     # the advantage estimator's state across iterations (e.g. IFPO's EMA)

    # the stack's parts, by name (the loop below reads them)
    learners = property(lambda self: self.stack.learners if self.stack else None)
    rollout = property(lambda self: self.stack.rollout if self.stack else None)
    pool = property(lambda self: self.stack.pool if self.stack else None)
    sync = property(lambda self: self.stack.sync if self.stack else None)

    def setup(self) -> "Trainer":
        from ascl_ray.runtime import build_stack
        from ascl_ray.sync.channels import verify_sync
        from ascl_ray.tracking import Tracker

        cfg, d = self.cfg, self.cfg_dict
        t0 = time.perf_counter()
        self.stack = build_stack(cfg, self.model_path)
        self.startup_s = time.perf_counter() - t0
        log.info("actors up in %.1fs", self.startup_s)
        # the engine must start from exactly the learner's weights: verify before the first step
        if cfg.trainer.verify_sync:
            verify_sync(self.learners, self.rollout, self.probes, cfg.trainer.sync_tol)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(d, indent=2))
        self.tracker = Tracker(str(self.out_dir), d, mode=cfg.tracking.wandb_mode, project=cfg.tracking.project,
                               run_name=cfg.tracking.run_name, progress=cfg.tracking.progress,
                               total=cfg.trainer.iterations)
        return self

    def step(self, it: int) -> dict[str, float]:
        from ascl_ray.sync.channels import verify_sync
        from ascl_ray.tracking import PHASES, PhaseTimer

        cfg = self.cfg
        timer = PhaseTimer()
        t_it = time.perf_counter()
        rows, gids = self.sampler.next_batch()
        with timer("rollout"):
            rollouts = self.rollout.generate(rows, gids, seed=cfg.trainer.seed * 100_003 + it)
        with timer("reward"):
            score(self.pool, rollouts)
        extra: dict[str, float] = {}
        if cfg.algorithm.dynamic_sampling:
            rollouts, extra = self._dynamic_sampling(rollouts, it, timer)
        with timer("advantage"):
            metrics = compute_advantages(cfg, rollouts, self.adv_state)
            metrics.update(group_metrics(rollouts))
            metrics.update(extra)
        with timer("train"):
            metrics.update(self.learners.update(rollouts))
        with timer("sync"):
            rep = self.sync.push(self.learners, self.rollout)
            if cfg.trainer.verify_sync:
                metrics["sync/max_logprob_diff"] = verify_sync(self.learners, self.rollout, self.probes,
                                                               cfg.trainer.sync_tol)
        step = time.perf_counter() - t_it
        for ph in PHASES:
            metrics[f"timing/{ph}"] = timer.times.get(ph, 0.0)
            self.tracker.phase_done(ph, timer.times.get(ph, 0.0))
        metrics["timing/step"] = step
        work = sum(timer.times.get(p, 0.0) for p in ("rollout", "reward", "train", "sync"))
        metrics["timing/overhead_frac"] = max(0.0, step - work) / step
        metrics.update({"sync/bytes": rep.n_bytes, "sync/seconds": rep.seconds,
                        "sync/MBps": rep.n_bytes / 1e6 / max(rep.seconds, 1e-9),
                        "sync/load_seconds": rep.load_seconds, "sync/export_seconds": rep.export_seconds})
        self.tracker.log(metrics, step=it)
        return metrics

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
                rollouts = self.rollout.generate(rows, gids, seed=self.cfg.trainer.seed * 100_003 + it + 7919 * rounds)
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
    """Run the loop; returns a summary (history, paths). Raises on any failed sync verification."""
    tr = Trainer(cfg)
    try:
        tr.setup()
        n = cfg.trainer.iterations
        for it in range(n):
            tr.step(it)
            if cfg.trainer.save_every and (it + 1) % cfg.trainer.save_every == 0 and it + 1 < n:
                tr.save(f"checkpoint-{it + 1}")
        final = tr.save("final")
        plot = tr.tracker.plot()
        summary = {"history": tr.tracker.history, "final_checkpoint": final, "plot": plot,
                   "startup_s": tr.startup_s, "total_s": time.perf_counter() - tr.t_start, "out_dir": str(tr.out_dir)}
        (tr.out_dir / "summary.json").write_text(
            json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
        return summary
    finally:
        tr.close()
